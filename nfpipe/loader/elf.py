"""ELF → the parts of an ObjectSpec: nfpipe's reader of BPF objects (pyelftools + nfpipe.btf).

What it does, in the order of ``_Reader.read``:

1. checks the file is a little-endian EM_BPF relocatable object;
2. parses ``.BTF`` and ``.BTF.ext`` and fixes up each DATASEC's size and variable
   offsets from the ELF section sizes and symbol values (as libbpf does: the
   compiler cannot know them), so the BTF can be loaded into the kernel;
3. turns ``.data``/``.rodata*``/``.bss`` into single-entry array maps, and the
   BTF-defined maps of ``.maps`` into MapSpecs (``__uint``/``__type``/``__array``,
   inner maps, ``.values`` initial contents naming programs or maps);
4. finds programs (global functions in executable sections other than ``.text``)
   and links each with the subprograms it calls (``.text`` functions and static
   functions of its own section), fixing call offsets and carrying func_info and
   line_info along;
5. records every map reference as a symbolic ``Reloc``; anything it cannot
   resolve (CO-RE, kfuncs, externs, unknown relocation types) is a ``SpecError``
   naming the program, section and offset.
"""
from __future__ import annotations

import bisect
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from nfpipe.btf import BTF, BTFExt, Kind
from nfpipe.errors import SpecError
from nfpipe.kernel import abi
from nfpipe.loader import insn as I
from nfpipe.loader.specs import (
    ARRAY,
    MAP_IN_MAP_TYPES,
    PROG_ARRAY,
    LineInfoSpec,
    MapSpec,
    ProgramSpec,
    Reloc,
    VariableSpec,
    section_def,
)

SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4

R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10

BPF_F_RDONLY_PROG = abi.BPF_F_RDONLY_PROG

# The fields of a BTF-defined map (libbpf spelling) and how each is encoded.
_UINT_FIELDS = {"type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
                "pinning", "map_extra"}
_TYPE_FIELDS = {"key", "value"}


def read_elf(path: str) -> dict[str, Any]:
    """The parts of the ObjectSpec of the ELF file at *path* (its constructor's arguments)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SpecError(f"cannot read BPF object: {exc.strerror}", file=path) from None
    return read_elf_bytes(data, path)


def read_elf_bytes(data: bytes, name: str) -> dict[str, Any]:
    try:
        elf = ELFFile(io.BytesIO(data))
        machine = elf["e_machine"]
    except (ELFError, ValueError, OSError) as exc:
        raise SpecError(f"not an ELF file ({exc}); nfpipe loads BPF objects built by "
                        f"'nfpipe compile' or 'clang -target bpf -O2 -g -c'", file=name) from None
    if machine != "EM_BPF":
        raise SpecError(f"this is an ELF object for {machine}, not for BPF (e_machine must be "
                        f"EM_BPF); compile the source with 'nfpipe compile'", file=name)
    if not elf.little_endian:
        raise SpecError("big-endian BPF objects are not supported on this host", file=name)
    if elf["e_type"] != "ET_REL":
        raise SpecError(f"expected a relocatable BPF object (ET_REL), found {elf['e_type']}",
                        file=name)
    try:
        return _Reader(elf, name).read()
    except (ELFError, IndexError, KeyError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"corrupt BPF object: {type(exc).__name__}: {exc}", file=name) from None


@dataclass
class _Symbol:
    name: str
    value: int
    size: int
    type: str      # STT_*
    bind: str      # STB_*
    shndx: int | str


@dataclass
class _Function:
    name: str
    shndx: int
    section: str
    offset: int          # bytes from section start
    size: int
    is_global: bool

    @property
    def first(self) -> int:
        return self.offset // I.INSN_SIZE


@dataclass
class _Rel:
    offset: int
    type: int
    sym: _Symbol


@dataclass
class _Linked:
    insns: bytearray = field(default_factory=bytearray)
    relocs: list[Reloc] = field(default_factory=list)
    func_info: list[tuple[int, int]] = field(default_factory=list)
    line_info: list[LineInfoSpec] = field(default_factory=list)
    base: dict[tuple[int, int], int] = field(default_factory=dict)   # (shndx, offset) → index
    order: list[_Function] = field(default_factory=list)


class _Reader:
    def __init__(self, elf: ELFFile, path: str):
        self.elf = elf
        self.path = path
        self.sections = list(elf.iter_sections())
        self.symbols: list[_Symbol] = []
        self.btf: BTF | None = None
        self.ext: BTFExt | None = None
        self._line_offs: dict[str, list[int]] = {}     # section -> its line infos' offsets
        self._moved_types: dict[str, int] = {}  # static vars BTF lists in another section
        self.rels: dict[int, dict[int, _Rel]] = {}
        self.functions: dict[tuple[int, int], _Function] = {}
        self.maps: dict[str, MapSpec] = {}
        self.variables: dict[str, VariableSpec] = {}
        self.data_sections: dict[int, str] = {}       # shndx → map name
        self.map_symbols: dict[str, _Symbol] = {}     # .maps symbols by name

    @property
    def types(self) -> BTF:
        """The object's BTF, where the caller needs it (the maps' definitions read it)."""
        if self.btf is None:
            raise self.error("the object has no BTF; compile with -g")
        return self.btf

    def error(self, msg: str, **where) -> SpecError:
        return SpecError(msg, file=self.path, **where)

    # --- top level ------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        self._read_symbols()
        self._read_btf()
        self._read_relocations()
        license = self._read_license()
        self._read_data_sections()
        self._read_btf_maps()
        self._read_functions()
        programs = self._read_programs(license)
        self._read_map_values(programs)
        return dict(programs=programs, maps=self.maps, variables=self.variables,
                    license=license, btf=self.btf, path=self.path)

    # --- symbols, BTF, relocations ---------------------------------------------

    def _read_symbols(self) -> None:
        symtab = self.elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            raise self.error("the object has no symbol table (.symtab); was it stripped?")
        for sym in symtab.iter_symbols():
            self.symbols.append(_Symbol(sym.name, sym["st_value"], sym["st_size"],
                                        sym["st_info"]["type"], sym["st_info"]["bind"],
                                        sym["st_shndx"]))

    def _read_btf(self) -> None:
        sec = self.elf.get_section_by_name(".BTF")
        if sec is None:
            return
        self.btf = btf = BTF.parse(sec.data())
        self._fixup_datasecs(btf)
        ext = self.elf.get_section_by_name(".BTF.ext")
        if ext is not None:
            self.ext = BTFExt.parse(ext.data(), btf)

    def _fixup_datasecs(self, btf: BTF) -> None:
        """Give every DATASEC its section's size and each variable its symbol's offset."""
        by_name = {s.name: s for s in self.sections}
        for _tid, t in btf:
            if t.kind != Kind.DATASEC:
                continue
            sec = by_name.get(t.name)
            if sec is None:
                continue
            shndx = self.sections.index(sec)
            offsets, elsewhere = {}, set()
            for s in self.symbols:
                if s.type != "STT_OBJECT":
                    continue
                if s.shndx == shndx:
                    offsets[s.name] = s.value
                elif isinstance(s.shndx, int):
                    elsewhere.add(s.name)
            self._moved_types.update(btf.fixup_datasec(t.name, sec["sh_size"], offsets,
                                                       elsewhere))

    def _read_relocations(self) -> None:
        for sec in self.sections:
            if sec["sh_type"] == "SHT_RELA":
                raise self.error(f"section {sec.name} has RELA relocations; BPF objects use "
                                 f"REL, this object was not built for the BPF target")
            if sec["sh_type"] != "SHT_REL":
                continue
            target = sec["sh_info"]
            tsec = self.sections[target]
            if not (tsec["sh_flags"] & SHF_EXECINSTR) and tsec.name != ".maps":
                continue      # debug info, BTF, .eh_frame: not ours to apply
            table = self.rels.setdefault(target, {})
            assert isinstance(sec, RelocationSection)
            for rel in sec.iter_relocations():
                sym = self.symbols[rel["r_info_sym"]]
                table[rel["r_offset"]] = _Rel(rel["r_offset"], rel["r_info_type"], sym)

    def _read_license(self) -> str:
        sec = self.elf.get_section_by_name("license")
        if sec is None:
            return ""
        return sec.data().split(b"\0", 1)[0].decode("ascii", "replace")

    # --- global data ------------------------------------------------------------

    @staticmethod
    def _is_data_section(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in (".data", ".rodata", ".bss"))

    def _read_data_sections(self) -> None:
        for shndx, sec in enumerate(self.sections):
            name = sec.name
            if not self._is_data_section(name) or not (sec["sh_flags"] & SHF_ALLOC):
                continue
            size = sec["sh_size"]
            if size == 0:
                continue
            data = bytes(size) if sec["sh_type"] == "SHT_NOBITS" else bytes(sec.data())
            rodata = name.startswith(".rodata")
            value_type_id = 0
            if self.btf is not None:
                try:
                    value_type_id = self.btf.find(name, Kind.DATASEC)
                except KeyError:
                    value_type_id = 0
            self.maps[name] = MapSpec(
                name=name, type=ARRAY, key_size=4, value_size=size, max_entries=1,
                # mmapable as libbpf makes them, so tools expecting libbpf's layout can
                # map a running program's globals; .rodata read-only for programs
                flags=abi.BPF_F_MMAPABLE | (BPF_F_RDONLY_PROG if rodata else 0),
                value_type_id=value_type_id,
                data=data, freeze=rodata, section=name, btf=self.btf)
            self.data_sections[shndx] = name
            if value_type_id:
                for vname, off, vsize, vtype in self.types.datasec_vars(name):
                    tid = self.types[vtype].type if vtype else 0
                    self._add_variable(VariableSpec(vname, name, off, vsize, tid))
            else:
                for s in self.symbols:
                    if s.shndx == shndx and s.type == "STT_OBJECT" and s.name:
                        self._add_variable(VariableSpec(s.name, name, s.value, s.size,
                                                        self._moved_types.get(s.name, 0)))

    def _add_variable(self, var: VariableSpec) -> None:
        if var.name in self.variables:
            prev = self.variables[var.name]
            raise self.error(f"global variable '{var.name}' is defined in both {prev.section} "
                             f"and {var.section}; give the static variables distinct names")
        self.variables[var.name] = var

    # --- BTF-defined maps ---------------------------------------------------------

    def _read_btf_maps(self) -> None:
        if self.elf.get_section_by_name("maps") is not None:
            raise self.error("legacy 'maps' section (struct bpf_map_def) is not supported; "
                             "declare maps in SEC(\".maps\") with __uint/__type as libbpf does")
        sec = self.elf.get_section_by_name(".maps")
        if sec is None:
            return
        shndx = self.sections.index(sec)
        for s in self.symbols:
            if s.shndx == shndx and s.type == "STT_OBJECT":
                self.map_symbols[s.name] = s
        if self.btf is None:
            raise self.error("the object declares maps in .maps but has no BTF; compile with "
                             "-g so the map definitions are described")
        for vname, _off, _size, vtype in self.btf.datasec_vars(".maps"):
            var = self.btf[vtype]
            self.maps[vname] = self._map_def(vname, var.type)

    def _map_def(self, name: str, type_id: int, inner: bool = False) -> MapSpec:
        btf = self.types
        sid = btf.skip_mods(type_id)
        st = btf[sid]
        if st.kind != Kind.STRUCT:
            raise self.error(f"map '{name}': a .maps definition must be a struct, found "
                             f"{btf.type_name(sid)}")
        f: dict = {}
        key_type = value_type = 0
        inner_spec = None
        for m in st.members:
            mt = btf.skip_mods(m.type)
            if m.name in _UINT_FIELDS:
                f[m.name] = self._uint_field(name, m.name, mt)
            elif m.name in _TYPE_FIELDS:
                t = btf[mt]
                if t.kind != Kind.PTR:
                    raise self.error(f"map '{name}': field '{m.name}' must be declared with "
                                     f"__type({m.name}, T)")
                tid = t.type
                size = btf.size_of(tid)
                if m.name == "key":
                    f.setdefault("key_size", size)
                    if f["key_size"] != size:
                        raise self.error(f"map '{name}': key_size {f['key_size']} disagrees "
                                         f"with the key type's size {size}")
                    key_type = tid
                else:
                    f.setdefault("value_size", size)
                    if f["value_size"] != size:
                        raise self.error(f"map '{name}': value_size {f['value_size']} "
                                         f"disagrees with the value type's size {size}")
                    value_type = tid
            elif m.name == "values":
                at = btf[mt]
                if at.kind != Kind.ARRAY:
                    raise self.error(f"map '{name}': 'values' must be declared with "
                                     f"__array(values, ...)")
                pt = btf[btf.skip_mods(at.type)]
                target = btf.skip_mods(pt.type) if pt.kind == Kind.PTR else 0
                if target and btf[target].kind == Kind.STRUCT:
                    if inner:
                        raise self.error(f"map '{name}': nested map-in-map is not supported")
                    inner_spec = self._map_def(f"{name}.inner", target, inner=True)
            else:
                raise self.error(f"map '{name}': unknown field '{m.name}' in its .maps "
                                 f"definition (known: type, key, value, key_size, value_size, "
                                 f"max_entries, map_flags, numa_node, pinning, values, map_extra)")
        if "type" not in f:
            raise self.error(f"map '{name}': no map type (__uint(type, BPF_MAP_TYPE_...))")
        mtype = f["type"]
        if mtype in MAP_IN_MAP_TYPES:
            if inner_spec is None:
                raise self.error(f"map '{name}': a map-in-map needs its inner map declared "
                                 f"with __array(values, struct {{...}})")
            f.setdefault("value_size", 4)
        if mtype == PROG_ARRAY:
            f.setdefault("key_size", 4)
            f.setdefault("value_size", 4)
        return MapSpec(
            name=name, type=mtype, key_size=f.get("key_size", 0),
            value_size=f.get("value_size", 0), max_entries=f.get("max_entries", 0),
            flags=f.get("map_flags", 0), numa_node=f.get("numa_node"),
            map_extra=f.get("map_extra", 0), pinning=f.get("pinning", 0),
            key_type_id=key_type, value_type_id=value_type, inner=inner_spec,
            section=".maps", btf=btf)

    def _uint_field(self, mapname: str, fname: str, tid: int) -> int:
        btf = self.types
        t = btf[tid]
        if t.kind == Kind.PTR:
            a = btf[btf.skip_mods(t.type)]
            if a.kind == Kind.ARRAY:
                return a.nelems
        raise self.error(f"map '{mapname}': field '{fname}' must be declared with "
                         f"__uint({fname}, N)")

    # --- programs -----------------------------------------------------------------

    def _read_functions(self) -> None:
        for s in self.symbols:
            if s.type != "STT_FUNC" or not isinstance(s.shndx, int):
                continue
            sec = self.sections[s.shndx]
            if not (sec["sh_flags"] & SHF_EXECINSTR):
                continue
            if s.value % I.INSN_SIZE or s.size % I.INSN_SIZE:
                raise self.error(f"function '{s.name}' is not instruction-aligned",
                                 section=sec.name, offset=s.value)
            self.functions[(s.shndx, s.value)] = _Function(
                s.name, s.shndx, sec.name, s.value, s.size, s.bind in ("STB_GLOBAL", "STB_WEAK"))

    def _read_programs(self, license: str) -> dict[str, ProgramSpec]:
        programs: dict[str, ProgramSpec] = {}
        for fn in sorted(self.functions.values(), key=lambda f: (f.shndx, f.offset)):
            if fn.section == ".text" or not fn.is_global:
                continue
            sdef = section_def(fn.section)
            if sdef is None:
                raise self.error(f"program '{fn.name}' is in section '{fn.section}', which names "
                                 f"no program type nfpipe knows (use SEC(\"xdp\"), SEC(\"tc\"), "
                                 f"SEC(\"tcx/ingress\"), ...)", program=fn.name,
                                 section=fn.section)
            if fn.name in programs:
                raise self.error(f"two programs are named '{fn.name}'", program=fn.name)
            linked = self._link(fn)
            self._check_core(fn, linked.order)
            programs[fn.name] = ProgramSpec(
                name=fn.name, section=fn.section, type=sdef.prog_type, insns=bytes(linked.insns),
                license=license, expected_attach_type=sdef.attach_type, flags=sdef.flags,
                relocs=linked.relocs, func_info=linked.func_info, line_info=linked.line_info,
                subprograms=[f.name for f in linked.order[1:]], btf=self.btf)
        return programs

    def _check_core(self, prog: _Function, functions: list[_Function]) -> None:
        """Refuse a program if any function it runs (its own or a subprogram in .text
        or its section) carries a CO-RE relocation: the loader applies none, and an
        unrelocated access would load silently wrong."""
        if self.ext is None:
            return
        for fn in functions:
            relos = [r for r in self.ext.core_relos.get(fn.section, [])
                     if fn.offset <= r.insn_off < fn.offset + fn.size]
            if not relos:
                continue
            off = relos[0].insn_off
            inside = "" if fn is prog else f" (in its subprogram '{fn.name}')"
            raise self.error(f"program '{prog.name}'{inside} uses CO-RE relocations "
                             f"({len(relos)} of them, the first at byte offset {off} of "
                             f"section '{fn.section}'); nfpipe's loader does not support "
                             f"CO-RE (BPF_CORE_READ, __builtin_preserve_access_index): "
                             f"access kernel structs directly",
                             program=prog.name, section=fn.section, offset=off)

    def _link(self, prog: _Function) -> _Linked:
        out = _Linked()
        self._append(out, prog)
        i = 0
        while i < len(out.order):       # order grows as calls discover subprograms
            self._resolve(out, out.order[i], prog)
            i += 1
        return out

    def _append(self, out: _Linked, fn: _Function) -> None:
        sec = self.sections[fn.shndx]
        raw = sec.data()[fn.offset:fn.offset + fn.size]
        base = len(out.insns) // I.INSN_SIZE
        out.base[(fn.shndx, fn.offset)] = base
        out.order.append(fn)
        out.insns += raw
        if self.ext is not None:
            lo, hi = fn.offset, fn.offset + fn.size
            for fi in self.ext.func_info.get(fn.section, []):
                if lo <= fi.insn_off < hi:
                    out.func_info.append((base + (fi.insn_off - lo) // I.INSN_SIZE, fi.type_id))
            lines = self.ext.line_info.get(fn.section, [])
            offs = self._line_offsets(fn.section, lines)
            for li in lines[bisect.bisect_left(offs, lo):bisect.bisect_left(offs, hi)]:
                if lo <= li.insn_off < hi:
                    out.line_info.append(LineInfoSpec(
                        base + (li.insn_off - lo) // I.INSN_SIZE, li.file_name_off, li.line_off,
                        li.line_col, self.types.string_at(li.file_name_off),
                        self.types.string_at(li.line_off)))

    def _line_offsets(self, section: str, lines: list) -> list[int]:
        """The instruction offsets of *section*'s line info, sorted (as the compiler
        writes them, else a sorted copy is searched): a function's lines by bisection."""
        cache = self._line_offs
        if section not in cache:
            offs = [li.insn_off for li in lines]
            if any(a > b for a, b in zip(offs, offs[1:])):
                lines.sort(key=lambda li: li.insn_off)
                offs.sort()
            cache[section] = offs
        return cache[section]

    def _resolve(self, out: _Linked, fn: _Function, prog: _Function) -> None:
        """Fix calls and record map references for one function placed in *out*."""
        base = out.base[(fn.shndx, fn.offset)]
        rels = self.rels.get(fn.shndx, {})
        lo, hi, size = fn.offset, fn.offset + fn.size, I.INSN_SIZE
        # Only relocated instructions and calls need a look: find the calls by their
        # opcode byte (the second half of a 16-byte ld_imm64 has opcode 0, so none hides
        # there) instead of decoding every instruction.
        start = base * size
        ops = bytes(out.insns[start:start + fn.size:size])
        todo = {(off - lo) // size for off in rels if lo <= off < hi}
        i = ops.find(I.OP_CALL)
        while i >= 0:
            todo.add(i)
            i = ops.find(I.OP_CALL, i + 1)
        for idx in sorted(todo):
            at = base + idx
            ins = I.decode(out.insns, at)
            rel = rels.get(lo + idx * size)
            if rel is None and not ins.is_subprog_call:
                continue                            # a helper call
            where = dict(program=prog.name, section=fn.section, offset=lo + idx * size)
            if rel is not None:
                self._apply_rel(out, fn, idx, at, ins, rel, where)
            else:
                target = fn.first + idx + ins.imm + 1
                self._call(out, fn.shndx, target, at, where)

    def _apply_rel(self, out, fn, idx, at, ins, rel: _Rel, where) -> None:
        sym = rel.sym
        if sym.shndx == "SHN_UNDEF":
            what = "kfunc" if ins.is_call else "extern variable (__ksym/__kconfig)"
            raise self.error(f"reference to {what} '{sym.name}' at instruction {idx} of "
                             f"'{fn.name}': nfpipe's loader does not resolve externs", **where)
        if not isinstance(sym.shndx, int):
            raise self.error(f"relocation against symbol '{sym.name}' in {sym.shndx} is not "
                             f"supported", **where)
        tsec = self.sections[sym.shndx]
        if ins.is_call:
            if rel.type != R_BPF_64_32 or not ins.is_subprog_call:
                raise self.error(f"unsupported call relocation (type {rel.type}) to "
                                 f"'{sym.name}'", **where)
            target = sym.value // I.INSN_SIZE + ins.imm + 1
            self._call(out, sym.shndx, target, at, where)
            return
        if not ins.is_ld_imm64 or rel.type != R_BPF_64_64:
            raise self.error(f"unsupported relocation type {rel.type} on instruction "
                             f"'{ins}' against '{sym.name}'", **where)
        if tsec["sh_flags"] & SHF_EXECINSTR:           # address of a function (callback)
            if (sym.value + ins.imm) % I.INSN_SIZE:
                raise self.error(f"function pointer to '{sym.name}' is not aligned", **where)
            target = (sym.value + ins.imm) // I.INSN_SIZE
            I.set_src(out.insns, at, I.PSEUDO_FUNC)
            self._call(out, sym.shndx, target, at, where)
            return
        if tsec.name == ".maps":
            if sym.name not in self.maps or sym.type == "STT_SECTION":
                raise self.error(f"reference into .maps that is not a map ('{sym.name}')",
                                 **where)
            out.relocs.append(Reloc(at, "map", sym.name))
            return
        mapname = self.data_sections.get(sym.shndx)
        if mapname is None:
            raise self.error(f"reference to '{sym.name or tsec.name}' in section '{tsec.name}', "
                             f"which is neither a map nor global data", **where)
        offset = sym.value + ins.imm if sym.type != "STT_SECTION" else ins.imm
        out.relocs.append(Reloc(at, "map_value", mapname, offset))

    def _call(self, out: _Linked, shndx: int, target: int, at: int, where) -> None:
        """Point the call (or pseudo-func load) at *at* to instruction *target* of *shndx*."""
        fn = self._function_at(shndx, target)
        if fn is None:
            raise self.error(f"call to instruction {target} of section "
                             f"'{self.sections[shndx].name}', which starts no known function",
                             **where)
        key = (fn.shndx, fn.offset)
        if key not in out.base:
            self._append(out, fn)
        dest = out.base[key] + (target - fn.first)
        I.set_imm(out.insns, at, dest - at - 1)

    def _function_at(self, shndx: int, index: int) -> _Function | None:
        for fn in self.functions.values():
            if fn.shndx == shndx and fn.first <= index < fn.first + fn.size // I.INSN_SIZE:
                return fn
        return None

    # --- initial contents of prog arrays and map-in-maps ---------------------------------

    def _read_map_values(self, programs: dict[str, ProgramSpec]) -> None:
        sec = self.elf.get_section_by_name(".maps")
        if sec is None:
            return
        rels = self.rels.get(self.sections.index(sec), {})
        if not rels:
            return
        for off, rel in sorted(rels.items()):
            owner = next((n for n, s in self.map_symbols.items()
                          if s.value <= off < s.value + s.size), None)
            if owner is None:
                raise self.error(f"relocation at offset {off} of .maps is outside every map")
            spec = self.maps[owner]
            values_off = self._member_offset(owner, "values")
            slot = (off - self.map_symbols[owner].value - values_off) // 8
            target = rel.sym.name
            if spec.type == PROG_ARRAY:
                if target not in programs:
                    raise self.error(f"prog array '{owner}' slot {slot} names '{target}', "
                                     f"which is not a program of this object")
            elif spec.type in MAP_IN_MAP_TYPES:
                if target not in self.maps:
                    raise self.error(f"map-in-map '{owner}' slot {slot} names '{target}', "
                                     f"which is not a map of this object")
            else:
                raise self.error(f"map '{owner}' has .values but is a {spec.type_name} map; "
                                 f"only prog arrays and map-in-maps take initial values")
            if slot >= spec.max_entries:
                raise self.error(f"'{owner}' initial value at slot {slot} is beyond its "
                                 f"max_entries {spec.max_entries}")
            spec.contents.append((slot, target))

    def _member_offset(self, mapname: str, member: str) -> int:
        btf = self.types
        for vname, _off, _size, vtype in btf.datasec_vars(".maps"):
            if vname != mapname:
                continue
            st = btf[btf.skip_mods(btf[vtype].type)]
            if st.kind == Kind.STRUCT:
                for m in st.members:
                    if m.name == member:
                        return m.bit_offset // 8
        raise self.error(f"map '{mapname}' has initial values but no '{member}' field")


def kernel_object_name(name: str, prefix: str = "") -> str:
    """A name the kernel accepts for a map or program: [A-Za-z0-9_.], at most 15 bytes."""
    full = (prefix + name) if prefix else name
    clean = "".join(c if (c.isalnum() or c in "_.") and c.isascii() else "_" for c in full)
    return clean[:15]


def short_kernel_name(full: str) -> str:
    """*full* as a kernel object name that stays unique: as it is when it fits in 15
    bytes, else its first 11 characters, "." and 3 hex digits of its digest (the
    kernel allows only letters, digits, "_" and "."), so two long names that share
    their first 15 characters still differ."""
    clean = "".join(c if (c.isalnum() or c in "_.") and c.isascii() else "_" for c in full)
    if len(clean) <= 15:
        return clean
    return f"{clean[:11]}.{hashlib.sha1(full.encode()).hexdigest()[:3]}"


__all__ = ["read_elf", "read_elf_bytes", "kernel_object_name", "short_kernel_name"]

