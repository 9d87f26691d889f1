"""Codecs: BTF-typed bytes <-> Python values, for map keys/values and global data.

``Codec.for_type(btf, type_id)`` builds a codec for any BTF type that has a
size; ``Codec.raw(size)`` is the codec of a map without BTF.  Every codec has
``.size``, ``.name`` (a C rendering of the type), ``encode(value) -> bytes`` of
exactly ``size`` bytes, and ``decode(data) -> value``.

Mapping of C types to Python values:

* integers and chars: ``int``, range-checked against the type (and bitfield
  width); ``_Bool``: ``bool`` (encode accepts ``True``/``False``/``0``/``1``);
  pointers: ``int`` (an unsigned 64-bit address).
* enums: ``int`` on decode; encode takes an ``int`` or an enumerator name.
* ``float``/``double`` (and ``_Float16``): ``float``; other float sizes
  (``long double``) are raw ``bytes``.
* struct: ``dict`` {member: value}.  Encode takes a mapping (unknown keys are an
  error, missing members are zero) or any object whose attributes are named
  after the members.  Bitfields work both ways.  Members of anonymous
  struct/union members are flattened into the parent dict, as C spells them.
* union: decode gives *every* member, each read from the same bytes (C lets you
  read any of them).  Encode takes a mapping naming one member (the usual
  case) or several, which must then agree on the bytes they share, so
  ``encode(decode(b)) == b``; unnamed bytes are zero.
* arrays of 1-byte integers (``char``, ``__u8``, ``__s8``): ``bytes``; encode
  also accepts ``bytearray``/``memoryview``, a ``str`` (UTF-8) or a list of
  ints, shorter input is zero-padded, longer is an error.  Other arrays:
  ``list``; a shorter list is zero-filled.
* DATASEC (a whole ``.data``/``.rodata``/``.bss`` section): ``dict`` {variable:
  value}; bytes between variables stay zero.
* typedefs, const, volatile, restrict and type tags are transparent.
* any type: ``bytes``/``bytearray``/``memoryview`` of exactly the type's size is
  taken verbatim.

All bad input raises :class:`CodecError`, a ``ValueError`` whose message names
the type and the member path (``struct flow_key.sport: ...``).
"""
from __future__ import annotations

import operator
import struct
from collections.abc import Mapping

from nfpipe.errors import NfpipeError, SpecError

from .types import Kind

_BYTES = (bytes, bytearray, memoryview)
_INT_FMT = {(1, False): "<B", (1, True): "<b", (2, False): "<H", (2, True): "<h",
            (4, False): "<I", (4, True): "<i", (8, False): "<Q", (8, True): "<q"}
_FLOAT_FMT = {2: "<e", 4: "<f", 8: "<d"}
_MAX_DEPTH = 64


class CodecError(NfpipeError, ValueError):
    """A value that cannot be encoded (or bytes that cannot be decoded) as a type.

    ``reason`` is what is wrong, ``path`` the member/index path inside the
    top-level type named ``type_name``.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []
        self.type_name = ""

    def __str__(self) -> str:
        where = self.type_name
        for p in self.path:
            where += p if p.startswith("[") else "." + p
        return f"{where}: {self.reason}" if where else self.reason


def _raw(value, size: int):
    """*value* as bytes when it is a bytes-like object of exactly *size* bytes."""
    if isinstance(value, _BYTES):
        mv = memoryview(value)
        if mv.nbytes == size:
            return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
    return None


def _check_raw(value, size: int, name: str) -> None:
    """Raise for a bytes-like *value* whose length is not the type's size."""
    if isinstance(value, _BYTES):
        n = memoryview(value).nbytes
        raise CodecError(f"raw bytes for {name} must be exactly {size} bytes, got {n}")


def _describe(value) -> str:
    r = repr(value)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{r} ({type(value).__name__})"


class Codec:
    """Base class; build one with :meth:`for_type` or :meth:`raw`."""

    size: int = 0
    name: str = ""

    # --- construction -------------------------------------------------------------

    @staticmethod
    def for_type(btf, type_id: int) -> Codec:
        """The codec of BTF type *type_id* (SpecError for void, functions, forwards)."""
        return _Builder(btf).build(type_id, 0)

    @staticmethod
    def raw(size: int) -> Codec:
        """Bytes in, bytes out, of exactly *size* bytes (a map without BTF)."""
        return RawCodec(size)

    # --- public API -----------------------------------------------------------------

    def encode(self, value) -> bytes:
        buf = bytearray(self.size)
        try:
            self._pack(buf, 0, value)
        except CodecError as exc:
            exc.type_name = self.name
            raise
        return bytes(buf)

    def decode(self, data) -> object:
        if not isinstance(data, _BYTES):
            raise CodecError(f"{self.name}: decode needs bytes, got {_describe(data)}")
        mv = memoryview(data).cast("B") if isinstance(data, memoryview) else data
        if len(mv) != self.size:
            raise CodecError(f"{self.name}: expected {self.size} bytes, got {len(mv)}")
        return self._unpack(bytes(mv), 0)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.size} bytes)>"

    # --- for subclasses ---------------------------------------------------------------

    def _pack(self, buf: bytearray, off: int, value) -> None:   # pragma: no cover
        raise NotImplementedError

    def _unpack(self, data: bytes, off: int):                    # pragma: no cover
        raise NotImplementedError


class RawCodec(Codec):
    """Opaque bytes.  Encode also takes a non-negative int (little-endian)."""

    def __init__(self, size: int, name: str | None = None):
        if size < 0:
            raise ValueError(f"a codec size cannot be negative ({size})")
        self.size = size
        self.name = name or f"{size} raw bytes"

    def _pack(self, buf, off, value):
        raw = _raw(value, self.size)
        if raw is not None:
            buf[off:off + self.size] = raw
            return
        if isinstance(value, _BYTES):
            raise CodecError(f"expected exactly {self.size} bytes, got "
                             f"{memoryview(value).nbytes}")
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < 1 << (8 * self.size):
                raise CodecError(f"int {value} does not fit in {self.size} bytes")
            buf[off:off + self.size] = value.to_bytes(self.size, "little")
            return
        raise CodecError(f"expected {self.size} bytes (or an int), got {_describe(value)}")

    def _unpack(self, data, off):
        return data[off:off + self.size]


# --- scalars -------------------------------------------------------------------------


class _Scalar(Codec):
    """An integer-valued codec (int, bool, enum, pointer); also the value side of a bitfield."""

    signed = False
    _st: struct.Struct | None = None       # the fast path, for the sizes struct knows

    def _coerce(self, value, bits: int) -> int:
        raise NotImplementedError                                  # pragma: no cover

    def _convert(self, v: int):
        return v

    def _check_range(self, v: int, bits: int, what: str | None = None) -> int:
        if self.signed:
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        else:
            lo, hi = 0, (1 << bits) - 1
        if not lo <= v <= hi:
            what = what or self.name
            if bits != self.size * 8:
                what = f"a {bits}-bit {what} bitfield"
            raise CodecError(f"value {v} is out of range for {what} ({lo}..{hi})")
        return v

    def _pack(self, buf, off, value):
        raw = _raw(value, self.size)
        if raw is not None:
            buf[off:off + self.size] = raw
            return
        _check_raw(value, self.size, self.name)
        v = self._coerce(value, self.size * 8)
        if self._st is not None:
            self._st.pack_into(buf, off, v)
        else:
            buf[off:off + self.size] = (v & ((1 << (8 * self.size)) - 1)).to_bytes(
                self.size, "little")

    def _unpack(self, data, off):
        if self._st is not None:
            return self._convert(self._st.unpack_from(data, off)[0])
        return self._convert(int.from_bytes(data[off:off + self.size], "little",
                                            signed=self.signed))


def _index(value, what: str) -> int:
    if isinstance(value, (float, str, bytes, bytearray, memoryview)) or value is None:
        raise CodecError(f"expected an int for {what}, got {_describe(value)}")
    try:
        return operator.index(value)
    except TypeError:
        raise CodecError(f"expected an int for {what}, got {_describe(value)}") from None


class IntCodec(_Scalar):
    def __init__(self, name: str, size: int, signed: bool):
        self.name, self.size, self.signed = name, size, signed
        fmt = _INT_FMT.get((size, signed))
        self._st = struct.Struct(fmt) if fmt else None

    def _coerce(self, value, bits):
        return self._check_range(_index(value, self.name), bits)


class BoolCodec(_Scalar):
    def __init__(self, name: str, size: int):
        self.name, self.size = name, size
        fmt = _INT_FMT.get((size, False))
        self._st = struct.Struct(fmt) if fmt else None

    def _coerce(self, value, bits):  # noqa: ARG002 - the signature of IntCodec._coerce
        if isinstance(value, bool):
            return int(value)
        v = _index(value, self.name)
        if v not in (0, 1):
            raise CodecError(f"value {v} is not a valid {self.name} (use True/False or 0/1)")
        return v

    def _convert(self, v):
        return v != 0


class EnumCodec(_Scalar):
    def __init__(self, name: str, size: int, signed: bool, values: list[tuple[str, int]]):
        self.name, self.size, self.signed = name, size, signed
        self.values: dict[str, int] = {}
        for n, v in values:
            self.values.setdefault(n, v)
        fmt = _INT_FMT.get((size, signed))
        self._st = struct.Struct(fmt) if fmt else None

    def _coerce(self, value, bits):
        if isinstance(value, str):
            try:
                v = self.values[value]
            except KeyError:
                names = list(self.values)
                shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise CodecError(f"{value!r} is not an enumerator of {self.name} "
                                 f"(known: {shown or 'none'})") from None
            if not self.signed and v < 0:         # negative value in an unsigned enum
                v &= (1 << bits) - 1
            return self._check_range(v, bits)
        return self._check_range(_index(value, self.name), bits)


class FloatCodec(Codec):
    def __init__(self, name: str, size: int):
        self.name, self.size = name, size
        self._st = struct.Struct(_FLOAT_FMT[size])

    def _pack(self, buf, off, value):
        raw = _raw(value, self.size)
        if raw is not None:
            buf[off:off + self.size] = raw
            return
        _check_raw(value, self.size, self.name)
        if isinstance(value, (str, bytes, bytearray, memoryview)) or value is None:
            raise CodecError(f"expected a float for {self.name}, got {_describe(value)}")
        try:
            f = float(value)
            self._st.pack_into(buf, off, f)
        except (TypeError, ValueError):
            raise CodecError(f"expected a float for {self.name}, got {_describe(value)}") \
                from None
        except (OverflowError, struct.error):
            raise CodecError(f"{value!r} is out of range for {self.name}") from None

    def _unpack(self, data, off):
        return self._st.unpack_from(data, off)[0]


# --- bitfields -------------------------------------------------------------------------


class _Bitfield:
    """A value of *bits* bits at bit *shift* from byte offset 0 of its storage."""

    __slots__ = ("scalar", "byte", "nbytes", "shift", "bits", "mask")

    def __init__(self, scalar: _Scalar, bit_offset: int, bits: int):
        self.scalar = scalar
        self.byte = bit_offset // 8
        self.shift = bit_offset % 8
        self.bits = bits
        self.nbytes = (self.shift + bits + 7) // 8
        self.mask = (1 << bits) - 1

    def pack(self, buf, off, value):
        v = self.scalar._coerce(value, self.bits) & self.mask
        lo = off + self.byte
        cur = int.from_bytes(buf[lo:lo + self.nbytes], "little")
        cur = (cur & ~(self.mask << self.shift)) | (v << self.shift)
        buf[lo:lo + self.nbytes] = cur.to_bytes(self.nbytes, "little")

    def unpack(self, data, off):
        lo = off + self.byte
        v = (int.from_bytes(data[lo:lo + self.nbytes], "little") >> self.shift) & self.mask
        if self.scalar.signed and v >> (self.bits - 1):
            v -= 1 << self.bits
        return self.scalar._convert(v)


class LegacyBitsCodec(Codec):
    """An INT whose value bits are fewer than its storage (BTF_INT_OFFSET/BITS)."""

    def __init__(self, scalar: _Scalar, offset: int, bits: int):
        self.name, self.size = scalar.name, scalar.size
        self.field = _Bitfield(scalar, offset, bits)

    def _pack(self, buf, off, value):
        raw = _raw(value, self.size)
        if raw is not None:
            buf[off:off + self.size] = raw
            return
        _check_raw(value, self.size, self.name)
        self.field.pack(buf, off, value)

    def _unpack(self, data, off):
        return self.field.unpack(data, off)


# --- aggregates -------------------------------------------------------------------------


class BytesCodec(Codec):
    """An array of 1-byte integers as ``bytes``."""

    def __init__(self, name: str, n: int, elem: _Scalar):
        self.name, self.size, self.elem = name, n, elem

    def _pack(self, buf, off, value):
        if isinstance(value, str):
            value = value.encode("utf-8")
        if isinstance(value, _BYTES):
            data = memoryview(value).cast("B") if isinstance(value, memoryview) else value
            if len(data) > self.size:
                raise CodecError(f"{len(data)} bytes do not fit in {self.name} "
                                 f"({self.size} bytes)")
            buf[off:off + len(data)] = data
            return
        if isinstance(value, (list, tuple)):
            if len(value) > self.size:
                raise CodecError(f"{len(value)} elements do not fit in {self.name}")
            for i, v in enumerate(value):
                try:
                    buf[off + i] = self.elem._coerce(v, 8) & 0xFF
                except CodecError as exc:
                    exc.path.insert(0, f"[{i}]")
                    raise
            return
        raise CodecError(f"expected bytes, str or a list of ints for {self.name}, got "
                         f"{_describe(value)}")

    def _unpack(self, data, off):
        return data[off:off + self.size]


class ArrayCodec(Codec):
    def __init__(self, name: str, n: int, elem: Codec):
        self.name, self.n, self.elem = name, n, elem
        self.size = n * elem.size

    def _pack(self, buf, off, value):
        raw = _raw(value, self.size)
        if raw is not None:
            buf[off:off + self.size] = raw
            return
        _check_raw(value, self.size, self.name)
        if not isinstance(value, (list, tuple)):
            raise CodecError(f"expected a list of up to {self.n} elements for {self.name}, "
                             f"got {_describe(value)}")
        if len(value) > self.n:
            raise CodecError(f"{len(value)} elements do not fit in {self.name}")
        es = self.elem.size
        for i, v in enumerate(value):
            try:
                self.elem._pack(buf, off + i * es, v)
            except CodecError as exc:
                exc.path.insert(0, f"[{i}]")
                raise

    def _unpack(self, data, off):
        es = self.elem.size
        unpack = self.elem._unpack
        return [unpack(data, off + i * es) for i in range(self.n)]


class _Field:
    __slots__ = ("name", "offset", "codec", "bitfield", "keys")

    def __init__(self, name, offset, codec, bitfield=None, keys=None):
        self.name = name          # "" for a flattened anonymous struct/union member
        self.offset = offset      # byte offset (unused for bitfields)
        self.codec = codec
        self.bitfield = bitfield  # _Bitfield or None
        self.keys = keys          # flattened names (anonymous members only)


class StructCodec(Codec):
    """A struct (``is_union=False``) or union as a dict; see the module docstring."""

    def __init__(self, name: str, size: int, fields: list[_Field], is_union: bool):
        self.name, self.size, self.fields, self.is_union = name, size, fields, is_union
        keys: list[str] = []
        for f in fields:
            keys.extend(f.keys if f.keys is not None else [f.name])
        self.keys = keys
        self._keyset = frozenset(keys)

    def _as_mapping(self, value) -> Mapping:
        if isinstance(value, Mapping):
            unknown = [k for k in value if k not in self._keyset]
            if unknown:
                raise CodecError(f"unknown member{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(map(repr, unknown))} "
                                 f"(members: {', '.join(self.keys) or 'none'})")
            return value
        if isinstance(value, (str, int, float, list, tuple)) or value is None \
                or isinstance(value, _BYTES):
            what = "a dict of one member" if self.is_union else "a dict"
            raise CodecError(f"expected {what} (or an object with attributes) for "
                             f"{self.name}, got {_describe(value)}")
        return {k: getattr(value, k) for k in self.keys if hasattr(value, k)}

    def _pack(self, buf, off, value):
        raw = _raw(value, self.size)
        if raw is not None:
            buf[off:off + self.size] = raw
            return
        _check_raw(value, self.size, self.name)
        mapping = self._as_mapping(value)
        given = []
        for f in self.fields:
            if f.keys is not None:
                sub = {k: mapping[k] for k in f.keys if k in mapping}
                if not sub:
                    continue
                val = sub
            elif f.name in mapping:
                val = mapping[f.name]
            else:
                continue
            try:
                self._put(f, buf, off, val)
            except CodecError as exc:
                if f.keys is None:
                    exc.path.insert(0, f.name)
                raise
            given.append((f, val))
        if self.is_union and len(given) > 1:
            # Several members: each must already be what the bytes hold.
            region = bytes(buf[off:off + self.size])
            for f, val in given:
                tmp = bytearray(region)
                self._put(f, tmp, 0, val)
                if tmp != region:
                    names = [f.name or "/".join(f.keys) for f, _ in given]
                    raise CodecError(f"members {', '.join(names)} of {self.name} overlap "
                                     f"with different values; give one member")

    @staticmethod
    def _put(f: _Field, buf, off, val):
        if f.bitfield is not None:
            f.bitfield.pack(buf, off, val)
        else:
            f.codec._pack(buf, off + f.offset, val)

    def _unpack(self, data, off):
        out = {}
        for f in self.fields:
            if f.bitfield is not None:
                out[f.name] = f.bitfield.unpack(data, off)
            elif f.keys is not None:
                out.update(f.codec._unpack(data, off + f.offset))
            else:
                out[f.name] = f.codec._unpack(data, off + f.offset)
        return out


class DatasecCodec(Codec):
    """A whole data section as ``{variable: value}``."""

    def __init__(self, name: str, size: int, fields: list[_Field]):
        self.name, self.size, self.fields = name, size, fields
        self.keys = [f.name for f in fields]
        self._by_name = {f.name: f for f in fields}

    def _pack(self, buf, off, value):
        raw = _raw(value, self.size)
        if raw is not None:
            buf[off:off + self.size] = raw
            return
        _check_raw(value, self.size, self.name)
        if not isinstance(value, Mapping):
            raise CodecError(f"expected a dict of variables for {self.name}, got "
                             f"{_describe(value)}")
        unknown = [k for k in value if k not in self._by_name]
        if unknown:
            raise CodecError(f"unknown variable{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))} "
                             f"(variables: {', '.join(self.keys) or 'none'})")
        for k, v in value.items():
            f = self._by_name[k]
            try:
                f.codec._pack(buf, off + f.offset, v)
            except CodecError as exc:
                exc.path.insert(0, k)
                raise

    def _unpack(self, data, off):
        return {f.name: f.codec._unpack(data, off + f.offset) for f in self.fields}


# --- building --------------------------------------------------------------------------


class _Builder:
    def __init__(self, btf):
        self.btf = btf
        self.memo: dict[int, Codec] = {}

    def fail(self, type_id: int, why: str) -> SpecError:
        return SpecError(f"cannot build a codec for BTF type {type_id} "
                         f"({self.btf.type_name(type_id)}): {why}", section=".BTF")

    def build(self, type_id: int, depth: int) -> Codec:
        c = self.memo.get(type_id)
        if c is not None:
            return c
        if depth > _MAX_DEPTH:
            raise self.fail(type_id, f"types nested more than {_MAX_DEPTH} deep (a cycle?)")
        btf = self.btf
        name = btf.type_name(type_id)
        tid = btf.skip_mods(type_id)
        t = btf[tid]
        k = t.kind
        if k == Kind.INT:
            c = self.scalar(tid, name)
            if t.offset or t.bits != t.size * 8:
                if t.bits == 0 or t.offset + t.bits > t.size * 8:
                    raise self.fail(type_id, f"INT with {t.bits} bits at offset {t.offset} "
                                             f"does not fit in {t.size} bytes")
                c = LegacyBitsCodec(c, t.offset, t.bits)
        elif k in (Kind.ENUM, Kind.ENUM64, Kind.PTR):
            c = self.scalar(tid, name)
        elif k == Kind.FLOAT:
            c = FloatCodec(name, t.size) if t.size in _FLOAT_FMT else RawCodec(t.size, name)
        elif k == Kind.ARRAY:
            eid = btf.skip_mods(t.type)
            e = btf[eid]
            if e.kind == Kind.INT and e.size == 1 and not e.is_bool and e.bits == 8 \
                    and not e.offset:
                c = BytesCodec(name, t.nelems, self.scalar(eid, btf.type_name(t.type)))
            else:
                c = ArrayCodec(name, t.nelems, self.build(t.type, depth + 1))
        elif k in (Kind.STRUCT, Kind.UNION):
            c = self.composite(type_id, t, name, depth)
        elif k == Kind.DATASEC:
            c = self.datasec(type_id, t, depth)
        elif k == Kind.VAR:
            c = self.build(t.type, depth + 1)
        else:
            raise self.fail(type_id, f"a {k.name} has no value to encode")
        self.memo[type_id] = c
        return c

    def scalar(self, tid: int, name: str) -> _Scalar:
        t = self.btf[self.btf.skip_mods(tid)]
        k = t.kind
        if k == Kind.INT:
            if t.size == 0:
                raise self.fail(tid, "zero-sized INT")
            return BoolCodec(name, t.size) if t.is_bool else IntCodec(name, t.size, t.signed)
        if k in (Kind.ENUM, Kind.ENUM64):
            if t.size not in (1, 2, 4, 8):
                raise self.fail(tid, f"enum of {t.size} bytes")
            return EnumCodec(name, t.size, t.signed, t.values)
        if k == Kind.PTR:
            return IntCodec(name, 8, False)
        raise self.fail(tid, f"a {k.name} cannot be a bitfield")

    def composite(self, type_id, t, name, depth) -> StructCodec:
        btf = self.btf
        fields = []
        is_union = t.kind == Kind.UNION
        for m in t.members:
            mid = btf.skip_mods(m.type)
            mt = btf[mid]
            bits, bit_off = m.bitfield_size, m.bit_offset
            if not bits and mt.kind == Kind.INT and (mt.offset or mt.bits != mt.size * 8):
                bits, bit_off = mt.bits, bit_off + mt.offset        # kind_flag=0 bitfield
            if bits:
                if not m.name:
                    continue                                          # unnamed padding
                if bit_off + bits > t.size * 8:
                    raise self.fail(type_id, f"bitfield {m.name!r} runs past the end")
                bf = _Bitfield(self.scalar(m.type, btf.type_name(m.type)), bit_off, bits)
                fields.append(_Field(m.name, bit_off // 8, None, bf))
                continue
            if bit_off % 8:
                raise self.fail(type_id, f"member {m.name!r} is at bit offset {bit_off}, not "
                                         f"on a byte boundary")
            sub = self.build(m.type, depth + 1)
            if bit_off // 8 + sub.size > t.size:
                raise self.fail(type_id, f"member {m.name!r} runs past the end "
                                         f"({bit_off // 8} + {sub.size} > {t.size})")
            if not m.name:
                if isinstance(sub, StructCodec):
                    fields.append(_Field("", bit_off // 8, sub, keys=sub.keys))
                continue                                              # unnamed non-aggregate
            fields.append(_Field(m.name, bit_off // 8, sub))
        return StructCodec(name, t.size, fields, is_union)

    def datasec(self, type_id, t, depth) -> DatasecCodec:
        btf = self.btf
        if t.vars and t.size == 0:
            raise self.fail(type_id, f"DATASEC {t.name} has size 0: its size and variable "
                                     f"offsets were never filled in (call "
                                     f"BTF.fixup_datasec with the ELF section's size and "
                                     f"symbol offsets)")
        fields = []
        for v in t.vars:
            var = btf[v.type]
            if var.kind != Kind.VAR:
                continue                                              # .ksyms functions
            sub = self.build(var.type, depth + 1)
            if v.offset + sub.size > t.size:
                raise self.fail(type_id, f"variable {var.name!r} at offset {v.offset} runs "
                                         f"past the {t.size}-byte section")
            fields.append(_Field(var.name, v.offset, sub))
        return DatasecCodec(f"SEC(\"{t.name}\")", t.size, fields)


__all__ = ["Codec", "CodecError", "RawCodec", "IntCodec", "BoolCodec", "EnumCodec",
           "FloatCodec", "BytesCodec", "ArrayCodec", "StructCodec", "DatasecCodec"]
