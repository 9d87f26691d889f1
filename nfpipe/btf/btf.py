"""Parse, query, edit and re-encode raw BTF (the ``.BTF`` section, or
``/sys/kernel/btf/vmlinux``).

Encoding facts (``include/uapi/linux/btf.h``): a 24-byte header, then a type
section of ``struct btf_type`` records each followed by kind-specific data, then
a string section of NUL-terminated strings starting with an empty one.  Type id
0 is void; the n-th record is type id n.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from nfpipe.errors import SpecError

from .types import (
    MODIFIER_KINDS,
    Array,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Member,
    Param,
    Ptr,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    Volatile,
)

MAGIC = 0xEB9F
VERSION = 1
HEADER = struct.Struct("<HBBIIIII")          # struct btf_header
MAX_TYPE = 0x000FFFFF
MAX_NAME_OFFSET = 0x00FFFFFF
MAX_VLEN = 0xFFFF
_MAX_CHAIN = 64                               # modifier/array/ptr nesting before "cycle"

_U32x3 = struct.Struct("<III")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_TYPE_SIZED = (Kind.INT, Kind.ENUM, Kind.STRUCT, Kind.UNION, Kind.DATASEC, Kind.FLOAT,
               Kind.ENUM64)


def _err(msg: str, offset: int | None = None) -> SpecError:
    return SpecError(f"invalid BTF: {msg}", section=".BTF", offset=offset)


class BTF:
    """A parsed BTF blob: ``types[id]`` is the type with that id (0 is void)."""

    def __init__(self, types: list | None = None, strings: bytes = b"\0"):
        self.types: list = types if types is not None else [Void()]
        if not self.types or not isinstance(self.types[0], Void):
            self.types.insert(0, Void())
        if not strings or strings[0] != 0:
            strings = b"\0" + strings
        if strings[-1] != 0:
            raise ValueError("BTF string table must end with a NUL byte")
        self._strtab = bytearray(strings)
        self._str_cache: dict[int, str] = {}
        self._str_index: dict[str, int] | None = None
        self._name_index: dict[str, list[int]] | None = None
        self._name_index_len = -1

    # --- parsing ----------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes) -> BTF:
        """Parse a raw, little-endian BTF blob.  Corrupt input raises SpecError."""
        data = bytes(data)
        if len(data) < 4:
            raise _err(f"{len(data)} bytes is too short for a BTF header")
        magic = int.from_bytes(data[:2], "little")
        if magic != MAGIC:
            if magic == 0x9FEB:
                raise _err("the data is big-endian BTF; nfpipe only reads little-endian BTF "
                           "(compile for bpfel, not bpfeb)", 0)
            raise _err(f"bad magic 0x{magic:04x} (expected 0x{MAGIC:04x}); this is not BTF", 0)
        if len(data) < HEADER.size:
            raise _err(f"truncated header: {len(data)} bytes, need {HEADER.size}", 0)
        (_m, version, _flags, hdr_len, type_off, type_len, str_off,
         str_len) = HEADER.unpack_from(data)
        if version != VERSION:
            raise _err(f"unsupported version {version} (nfpipe reads version {VERSION})", 2)
        if hdr_len < HEADER.size:
            raise _err(f"header length {hdr_len} is less than {HEADER.size}", 4)
        if hdr_len > len(data):
            raise _err(f"truncated: the header is {hdr_len} bytes but the data has only "
                       f"{len(data)}", 4)
        body = len(data) - hdr_len
        if type_off % 4:
            raise _err(f"type section offset {type_off} is not 4-byte aligned", 8)
        if type_off + type_len > body:
            raise _err(f"truncated: type section [{type_off}, {type_off + type_len}) runs past "
                       f"the {body} bytes after the header", 8)
        if str_off + str_len > body:
            raise _err(f"truncated: string section [{str_off}, {str_off + str_len}) runs past "
                       f"the {body} bytes after the header", 16)
        if type_len and str_len and type_off < str_off + str_len and str_off < type_off + type_len:
            raise _err("the type and string sections overlap", 8)
        strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        if str_len:
            if strings[0] != 0:
                raise _err("the string section does not start with an empty string",
                           hdr_len + str_off)
            if strings[-1] != 0:
                raise _err("the string section does not end with a NUL byte",
                           hdr_len + str_off + str_len - 1)
        else:
            strings = b"\0"
        btf = cls.__new__(cls)
        btf._strtab = bytearray(strings)
        btf._str_cache = {}
        btf._str_index = None
        btf._name_index = None
        btf._name_index_len = -1
        btf.types = _parse_types(data, hdr_len + type_off, type_len, btf)
        return btf

    # --- container protocol -----------------------------------------------------

    def __getitem__(self, type_id: int):
        if not 0 <= type_id < len(self.types):
            raise KeyError(f"no BTF type id {type_id} (ids are 0..{len(self.types) - 1})")
        return self.types[type_id]

    def __len__(self) -> int:
        return len(self.types)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return iter(enumerate(self.types))

    def __repr__(self) -> str:
        return f"<BTF {len(self.types)} types, {len(self._strtab)} bytes of strings>"

    def add_type(self, t) -> int:
        """Append *t* and return its new type id."""
        self.types.append(t)
        return len(self.types) - 1

    # --- strings ----------------------------------------------------------------

    def string_at(self, offset: int) -> str:
        s = self._str_cache.get(offset)
        if s is not None:
            return s
        tab = self._strtab
        if not 0 <= offset < len(tab):
            raise _err(f"string offset {offset} is out of range (the string section has "
                       f"{len(tab)} bytes)")
        end = tab.find(0, offset)
        s = tab[offset:end].decode("utf-8", "replace")
        self._str_cache[offset] = s
        return s

    def add_string(self, s: str) -> int:
        """The offset of *s* in the string section, appending it when absent."""
        if not s:
            return 0
        index = self._str_index if self._str_index is not None else self._build_str_index()
        off = index.get(s)
        if off is not None:
            return off
        raw = s.encode("utf-8")
        if b"\0" in raw:
            raise ValueError(f"a BTF string cannot contain NUL bytes: {s!r}")
        off = len(self._strtab)
        self._strtab += raw + b"\0"
        index[s] = off
        self._str_cache[off] = s
        return off

    def _build_str_index(self) -> dict[str, int]:
        index: dict[str, int] = {}
        off = 0
        for raw in bytes(self._strtab).split(b"\0")[:-1]:
            s = raw.decode("utf-8", "replace")
            index.setdefault(s, off)
            off += len(raw) + 1
        self._str_index = index
        return index

    @property
    def strings(self) -> bytes:
        """The raw string section (what ``encode`` writes)."""
        return bytes(self._strtab)

    # --- queries ----------------------------------------------------------------

    def _index(self) -> dict[str, list[int]]:
        if self._name_index is None or self._name_index_len != len(self.types):
            index: dict[str, list[int]] = {}
            for tid, t in enumerate(self.types):
                name = t.name
                if name:
                    lst = index.get(name)
                    if lst is None:
                        index[name] = [tid]
                    else:
                        lst.append(tid)
            self._name_index = index
            self._name_index_len = len(self.types)
        return self._name_index

    def find(self, name: str, kind: Kind | None = None) -> int:
        """The id of the type called *name* (of *kind* when given); KeyError if absent.

        ``"struct x"``, ``"union x"`` and ``"enum x"`` imply the kind.  Without a
        kind, a definition is preferred over a FWD and the lowest id wins.
        """
        if kind is None:
            for prefix, k in (("struct ", Kind.STRUCT), ("union ", Kind.UNION),
                              ("enum ", None)):
                if name.startswith(prefix):
                    name = name[len(prefix):].strip()
                    if k is not None:
                        kind = k
                    else:
                        return self._find_enum(name)
                    break
        ids = self._index().get(name, ())
        if any(self.types[i].name != name for i in ids):
            self._name_index = None             # a type was renamed in place: rebuild
            ids = self._index().get(name, ())
        if kind is not None:
            for i in ids:
                if self.types[i].kind == kind:
                    return i
        elif ids:
            for i in ids:
                if self.types[i].kind != Kind.FWD:
                    return i
            return ids[0]
        what = f"{Kind(kind).name} " if kind is not None else ""
        raise KeyError(f"no BTF type {what}named {name!r}")

    def _find_enum(self, name: str) -> int:
        for k in (Kind.ENUM, Kind.ENUM64):
            try:
                return self.find(name, k)
            except KeyError:
                pass
        raise KeyError(f"no BTF enum named {name!r}")

    def find_all(self, name: str, kind: Kind | None = None) -> list[int]:
        """Every id of a type called *name* (and of *kind*, when given)."""
        ids = self._index().get(name, [])
        return [i for i in ids if self.types[i].name == name
                and (kind is None or self.types[i].kind == kind)]

    def skip_mods(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type id."""
        tid = type_id
        for _ in range(_MAX_CHAIN):
            t = self._get(tid)
            if t.kind not in MODIFIER_KINDS:
                return tid
            tid = t.type
        raise _err(f"type {type_id}: a chain of more than {_MAX_CHAIN} typedefs/qualifiers "
                   f"(a cycle?)")

    def _get(self, tid: int):
        if not 0 <= tid < len(self.types):
            raise _err(f"type id {tid} is out of range (this BTF has {len(self.types)} types)")
        return self.types[tid]

    def size_of(self, type_id: int) -> int:
        """Byte size of *type_id* after resolving modifiers (SpecError if it has none)."""
        mult = 1
        tid = type_id
        for _ in range(_MAX_CHAIN):
            tid = self.skip_mods(tid)
            t = self.types[tid]
            k = t.kind
            if k in _TYPE_SIZED:
                return mult * t.size
            if k == Kind.PTR:
                return mult * 8
            if k == Kind.ARRAY:
                mult *= t.nelems
                tid = t.type
                continue
            if k == Kind.VAR:
                tid = t.type
                continue
            raise _err(f"type {type_id} ({self.type_name(type_id)}) has no size: it resolves "
                       f"to a {k.name}")
        raise _err(f"type {type_id}: arrays nested more than {_MAX_CHAIN} deep (a cycle?)")

    def datasec_vars(self, section: str) -> list[tuple[str, int, int, int]]:
        """``(var name, offset, size, var type id)`` for each variable of DATASEC *section*."""
        try:
            tid = self.find(section, Kind.DATASEC)
        except KeyError:
            return []
        out = []
        for vsi in self.types[tid].vars:
            out.append((self._get(vsi.type).name, vsi.offset, vsi.size, vsi.type))
        return out

    def fixup_datasec(self, name: str, size: int, offsets: dict[str, int],
                      elsewhere: frozenset[str] | set[str] = frozenset()) -> dict[str, int]:
        """Give DATASEC *name* its ELF section's *size* and each variable its symbol offset.

        Clang leaves these zero in objects (the ELF symbols carry them); the kernel
        needs them filled and the variables sorted by offset.  A VAR with static
        linkage that is missing from *offsets* keeps its offset; a global one is
        an error, as is a variable that does not fit in the section.

        *elsewhere* names static variables whose symbol lives in another section:
        clang 14 puts a ``static const`` table in a mergeable ``.rodata.cst<N>``
        section yet lists it in ``.rodata``'s DATASEC.  They are dropped from this
        DATASEC, which must describe what the section's map holds; returned as
        {name: the type id of the variable's type}, for the section that holds them.
        """
        try:
            tid = self.find(name, Kind.DATASEC)
        except KeyError:
            raise _err(f"no DATASEC named {name!r} to fix up") from None
        ds = self.types[tid]
        ds.size = size
        moved: dict[str, int] = {}
        kept = []
        for vsi in ds.vars:
            var = self._get(vsi.type)
            if var.name in elsewhere and var.name not in offsets and var.kind == Kind.VAR \
                    and var.linkage == 0:
                moved[var.name] = var.type
            else:
                kept.append(vsi)
        ds.vars = kept
        for vsi in ds.vars:
            var = self._get(vsi.type)
            if var.name in offsets:
                vsi.offset = offsets[var.name]
            elif var.kind == Kind.VAR and var.linkage != 0:
                raise _err(f"DATASEC {name}: no symbol gives the offset of variable "
                           f"{var.name!r}")
            if not vsi.size and var.kind == Kind.VAR:
                vsi.size = self.size_of(var.type)
            if vsi.offset + vsi.size > size:
                raise _err(f"DATASEC {name}: variable {var.name!r} at offset {vsi.offset} "
                           f"(size {vsi.size}) does not fit in the {size}-byte section")
        ds.vars.sort(key=lambda v: v.offset)
        return moved

    # --- rendering --------------------------------------------------------------

    def type_name(self, type_id: int) -> str:
        """A C-like rendering of *type_id* for humans: ``struct flow_key *``, ``__u8[16]``."""
        try:
            return self._render(type_id, "", 0)
        except RecursionError:           # pragma: no cover - only for absurd input
            return f"<type {type_id}>"

    def _render(self, tid: int, inner: str, depth: int) -> str:
        if depth > _MAX_CHAIN or not 0 <= tid < len(self.types):
            return _join(f"<type {tid}>", inner)
        t = self.types[tid]
        k = t.kind
        if k == Kind.VOID:
            return _join("void", inner)
        if k in (Kind.INT, Kind.FLOAT, Kind.TYPEDEF):
            return _join(t.name, inner)
        if k in (Kind.STRUCT, Kind.UNION):
            word = "struct" if k == Kind.STRUCT else "union"
            return _join(f"{word} {t.name}" if t.name else f"{word} {{...}}", inner)
        if k in (Kind.ENUM, Kind.ENUM64):
            return _join(f"enum {t.name}" if t.name else "enum {...}", inner)
        if k == Kind.FWD:
            return _join(("union " if t.is_union else "struct ") + t.name, inner)
        if k == Kind.PTR:
            target = self.types[t.type] if 0 <= t.type < len(self.types) else None
            if target is not None and target.kind in (Kind.ARRAY, Kind.FUNC_PROTO):
                return self._render(t.type, f"(*{inner})", depth + 1)
            return self._render(t.type, "*" + inner, depth + 1)
        if k == Kind.ARRAY:
            return self._render(t.type, f"{inner}[{t.nelems}]", depth + 1)
        if k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG):
            q = (f'__attribute__((btf_type_tag("{t.name}")))' if k == Kind.TYPE_TAG
                 else k.name.lower())
            under = self.types[t.type] if 0 <= t.type < len(self.types) else None
            if under is not None and under.kind == Kind.PTR:
                return self._render(t.type, _join(q, inner), depth + 1)
            return q + " " + self._render(t.type, inner, depth + 1)
        if k == Kind.FUNC_PROTO:
            params = []
            for p in t.params:
                if p.type == 0:
                    params.append("...")
                else:
                    params.append(self._render(p.type, p.name, depth + 1))
            return self._render(t.ret, f"{inner}({', '.join(params) or 'void'})", depth + 1)
        if k == Kind.FUNC:
            return self._render(t.type, t.name + inner, depth + 1)
        if k == Kind.VAR:
            return self._render(t.type, t.name + inner, depth + 1)
        if k == Kind.DATASEC:
            return f"SEC(\"{t.name}\")"
        if k == Kind.DECL_TAG:
            return f'__attribute__((btf_decl_tag("{t.name}")))'
        return f"<{k.name} {tid}>"                       # pragma: no cover

    # --- encoding ---------------------------------------------------------------

    def encode(self) -> bytes:
        """Serialize the (possibly edited) types and strings to a raw BTF blob.

        The string section keeps the original strings at their offsets (so
        line_info string offsets stay valid) and appends new names.
        """
        out = bytearray()
        put = out.extend
        add = self.add_string
        p3 = _U32x3.pack
        for tid in range(1, len(self.types)):
            t = self.types[tid]
            k = t.kind
            try:
                name_off = add(t.name) if t.name else 0
                if k == Kind.INT:
                    put(p3(name_off, k << 24, t.size))
                    put(_U32.pack(((t.encoding & 0xF) << 24) | ((t.offset & 0xFF) << 16)
                                  | (t.bits & 0xFF)))
                elif k in (Kind.PTR, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT):
                    put(p3(name_off, k << 24, t.type))
                elif k == Kind.TYPE_TAG:
                    put(p3(name_off, (k << 24) | (int(bool(t.attr)) << 31), t.type))
                elif k == Kind.ARRAY:
                    put(p3(0, k << 24, 0))
                    put(p3(t.type, t.index_type, t.nelems))
                elif k in (Kind.STRUCT, Kind.UNION):
                    members = t.members
                    kflag = any(m.bitfield_size for m in members)
                    put(p3(name_off, _info(k, len(members), kflag), t.size))
                    for m in members:
                        off = m.bit_offset
                        if kflag:
                            if m.bitfield_size > 0xFF or off > 0xFFFFFF:
                                raise ValueError(f"member {m.name!r}: bitfield size "
                                                 f"{m.bitfield_size} / bit offset {off} "
                                                 f"does not fit the kind_flag encoding")
                            off |= m.bitfield_size << 24
                        put(p3(add(m.name) if m.name else 0, m.type, off))
                elif k == Kind.ENUM:
                    put(p3(name_off, _info(k, len(t.values), t.signed), t.size))
                    for vname, val in t.values:
                        put(_U32.pack(add(vname) if vname else 0))
                        put(_U32.pack(val & 0xFFFFFFFF))
                elif k == Kind.ENUM64:
                    put(p3(name_off, _info(k, len(t.values), t.signed), t.size))
                    for vname, val in t.values:
                        val &= 0xFFFFFFFFFFFFFFFF
                        put(p3(add(vname) if vname else 0, val & 0xFFFFFFFF, val >> 32))
                elif k == Kind.FWD:
                    put(p3(name_off, _info(k, 0, t.is_union), 0))
                elif k == Kind.FUNC:
                    put(p3(name_off, _info(k, t.linkage, False), t.type))
                elif k == Kind.FUNC_PROTO:
                    put(p3(name_off, _info(k, len(t.params), False), t.ret))
                    for p in t.params:
                        put(_U32.pack(add(p.name) if p.name else 0))
                        put(_U32.pack(p.type))
                elif k == Kind.VAR:
                    put(p3(name_off, k << 24, t.type))
                    put(_U32.pack(t.linkage))
                elif k == Kind.DATASEC:
                    put(p3(name_off, _info(k, len(t.vars), False), t.size))
                    for v in t.vars:
                        put(p3(v.type, v.offset, v.size))
                elif k == Kind.FLOAT:
                    put(p3(name_off, k << 24, t.size))
                elif k == Kind.DECL_TAG:
                    put(p3(name_off, _info(k, 0, t.attr), t.type))
                    put(_I32.pack(t.component_idx))
                else:
                    raise ValueError(f"cannot encode a {k!r} as a non-zero type id")
            except (struct.error, OverflowError, TypeError) as exc:
                raise ValueError(f"cannot encode BTF type {tid} ({k.name} {t.name!r}): "
                                 f"{exc}") from None
        strings = bytes(self._strtab)
        hdr = HEADER.pack(MAGIC, VERSION, 0, HEADER.size, 0, len(out), len(out), len(strings))
        return hdr + bytes(out) + strings


def _info(kind: int, vlen: int, kflag) -> int:
    if not 0 <= vlen <= MAX_VLEN:
        raise ValueError(f"{vlen} entries exceed the BTF limit of {MAX_VLEN}")
    return (int(bool(kflag)) << 31) | (kind << 24) | vlen


def _join(base: str, inner: str) -> str:
    if not inner:
        return base
    if inner[0] == "[":
        return base + inner
    return base + " " + inner


def _parse_types(data: bytes, start: int, length: int, btf: BTF) -> list:
    """Decode the type section; validates bounds, kinds, string and type id ranges."""
    strtab = bytes(btf._strtab)
    nstr = len(strtab)
    # Pre-split the string table once: offset -> str for every string start.
    names: dict[int, str] = {}
    off = 0
    for chunk in strtab.split(b"\0")[:-1]:
        names[off] = chunk.decode("utf-8", "replace") if chunk else ""
        off += len(chunk) + 1

    def name_of(noff: int, where: int) -> str:
        s = names.get(noff)
        if s is not None:
            return s
        if noff >= nstr:
            raise _err(f"type {len(types)}: string offset {noff} is out of range (the string "
                       f"section has {nstr} bytes)", where)
        s = strtab[noff:strtab.index(b"\0", noff)].decode("utf-8", "replace")
        names[noff] = s
        return s

    unpack3 = _U32x3.unpack_from
    unpack1 = _U32.unpack_from
    types: list = [Void()]
    append = types.append
    pos = start
    end = start + length
    max_ref = 0
    K = Kind
    while pos < end:
        if pos + 12 > end:
            raise _err(f"truncated: type {len(types)} at offset {pos} has only {end - pos} of "
                       f"its 12 header bytes", pos)
        name_off, info, size_type = unpack3(data, pos)
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = info >> 31
        here = pos
        pos += 12
        name = names.get(name_off)
        if name is None:
            name = name_of(name_off, here)
        if kind == 1:                                               # INT
            if pos + 4 > end:
                raise _err(f"truncated: INT type {len(types)} at offset {here}", here)
            v = unpack1(data, pos)[0]
            pos += 4
            append(Int(name, size_type, (v >> 24) & 0xF, (v >> 16) & 0xFF, v & 0xFF))
        elif kind == 2:                                             # PTR
            append(Ptr(size_type, name))
            if size_type > max_ref:
                max_ref = size_type
        elif kind == 4 or kind == 5:                                # STRUCT / UNION
            n = 3 * vlen
            if pos + 4 * n > end:
                raise _err(f"truncated: {K(kind).name} type {len(types)} ({name!r}) at offset "
                           f"{here} declares {vlen} members", here)
            raw = struct.unpack_from(f"<{n}I", data, pos)
            pos += 4 * n
            members = []
            if kflag:
                for i in range(0, n, 3):
                    mn = names.get(raw[i])
                    if mn is None:
                        mn = name_of(raw[i], here)
                    o = raw[i + 2]
                    members.append(Member(mn, raw[i + 1], o & 0xFFFFFF, o >> 24))
            else:
                for i in range(0, n, 3):
                    mn = names.get(raw[i])
                    if mn is None:
                        mn = name_of(raw[i], here)
                    members.append(Member(mn, raw[i + 1], raw[i + 2], 0))
            if n:
                m = max(raw[1::3])
                if m > max_ref:
                    max_ref = m
            append(Struct(name, size_type, members) if kind == 4
                   else Union(name, size_type, members))
        elif kind in (8, 9, 10, 11):                                # TYPEDEF/VOLATILE/...
            append(Typedef(name, size_type) if kind == 8
                   else Volatile(size_type, name) if kind == 9
                   else Const(size_type, name) if kind == 10
                   else Restrict(size_type, name))
            if size_type > max_ref:
                max_ref = size_type
        elif kind == 13:                                            # FUNC_PROTO
            n = 2 * vlen
            if pos + 4 * n > end:
                raise _err(f"truncated: FUNC_PROTO type {len(types)} at offset {here} declares "
                           f"{vlen} parameters", here)
            raw = struct.unpack_from(f"<{n}I", data, pos)
            pos += 4 * n
            params = []
            for i in range(0, n, 2):
                pn = names.get(raw[i])
                if pn is None:
                    pn = name_of(raw[i], here)
                params.append(Param(pn, raw[i + 1]))
            m = max(raw[1::2], default=0)
            append(FuncProto(size_type, params, name))
            if max(m, size_type) > max_ref:
                max_ref = max(m, size_type)
        elif kind == 12:                                            # FUNC
            append(Func(name, size_type, vlen))
            if size_type > max_ref:
                max_ref = size_type
        elif kind == 3:                                             # ARRAY
            if pos + 12 > end:
                raise _err(f"truncated: ARRAY type {len(types)} at offset {here}", here)
            et, it, ne = unpack3(data, pos)
            pos += 12
            append(Array(et, it, ne))
            if max(et, it) > max_ref:
                max_ref = max(et, it)
        elif kind == 6 or kind == 19:                               # ENUM / ENUM64
            width = 8 if kind == 6 else 12
            if pos + width * vlen > end:
                raise _err(f"truncated: {K(kind).name} type {len(types)} ({name!r}) at offset "
                           f"{here} declares {vlen} values", here)
            values = []
            if kind == 6:
                raw = struct.unpack_from(f"<{2 * vlen}{'i' if kflag else 'I'}", data, pos)
                for i in range(0, 2 * vlen, 2):
                    en = names.get(raw[i] & 0xFFFFFFFF)
                    if en is None:
                        en = name_of(raw[i] & 0xFFFFFFFF, here)
                    values.append((en, raw[i + 1]))
            else:
                raw = struct.unpack_from(f"<{3 * vlen}I", data, pos)
                for i in range(0, 3 * vlen, 3):
                    en = names.get(raw[i])
                    if en is None:
                        en = name_of(raw[i], here)
                    v = raw[i + 1] | (raw[i + 2] << 32)
                    if kflag and v >= 1 << 63:
                        v -= 1 << 64
                    values.append((en, v))
            pos += width * vlen
            append(Enum(name, size_type, values, bool(kflag), K(kind)))
        elif kind == 14:                                            # VAR
            if pos + 4 > end:
                raise _err(f"truncated: VAR type {len(types)} at offset {here}", here)
            append(Var(name, size_type, unpack1(data, pos)[0]))
            pos += 4
            if size_type > max_ref:
                max_ref = size_type
        elif kind == 15:                                            # DATASEC
            if pos + 12 * vlen > end:
                raise _err(f"truncated: DATASEC type {len(types)} ({name!r}) at offset {here} "
                           f"declares {vlen} variables", here)
            raw = struct.unpack_from(f"<{3 * vlen}I", data, pos)
            pos += 12 * vlen
            secinfo = [VarSecinfo(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, 3 * vlen, 3)]
            append(Datasec(name, size_type, secinfo))
            if vlen:
                m = max(raw[0::3])
                if m > max_ref:
                    max_ref = m
        elif kind == 7:                                             # FWD
            append(Fwd(name, bool(kflag)))
        elif kind == 16:                                            # FLOAT
            append(Float(name, size_type))
        elif kind == 17:                                            # DECL_TAG
            if pos + 4 > end:
                raise _err(f"truncated: DECL_TAG type {len(types)} at offset {here}", here)
            append(DeclTag(name, size_type, _I32.unpack_from(data, pos)[0], bool(kflag)))
            pos += 4
            if size_type > max_ref:
                max_ref = size_type
        elif kind == 18:                                            # TYPE_TAG
            append(TypeTag(name, size_type, bool(kflag)))
            if size_type > max_ref:
                max_ref = size_type
        else:
            raise _err(f"type {len(types)} at offset {here} has unknown kind {kind} "
                       f"(nfpipe knows kinds 1..{max(Kind)})", here)
        if len(types) > MAX_TYPE + 1:
            raise _err(f"more than {MAX_TYPE} types")
    if max_ref >= len(types):
        _report_bad_ref(types)
    return types


def _report_bad_ref(types: list) -> None:
    n = len(types)

    def refs(t):
        k = t.kind
        if k in (Kind.STRUCT, Kind.UNION):
            return [(f"member {m.name!r}", m.type) for m in t.members]
        if k == Kind.FUNC_PROTO:
            return [("return type", t.ret)] + [(f"parameter {p.name!r}", p.type)
                                               for p in t.params]
        if k == Kind.ARRAY:
            return [("element type", t.type), ("index type", t.index_type)]
        if k == Kind.DATASEC:
            return [("variable", v.type) for v in t.vars]
        if hasattr(t, "type"):
            return [("target", t.type)]
        return []

    for tid, t in enumerate(types):
        for what, ref in refs(t):
            if ref >= n:
                raise _err(f"type {tid} ({t.kind.name} {t.name!r}): {what} refers to type id "
                           f"{ref}, which is out of range (this BTF has {n} types)")
    raise _err("a type id is out of range")      # pragma: no cover


__all__ = ["BTF", "MAGIC"]
