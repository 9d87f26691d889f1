"""nfpipe.btf: parse what clang emits, query it, re-encode it, reject corrupt input."""
from __future__ import annotations

import os
import struct
import time

import pytest
from elftools.elf.elffile import ELFFile

from nfpipe.btf import (
    BTF,
    Array,
    BTFExt,
    Codec,
    Const,
    Datasec,
    Enum,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Member,
    Ptr,
    Struct,
    Typedef,
    Union,
    Var,
    Volatile,
)
from nfpipe.btf.types import BOOL, CHAR, SIGNED, TypeTag, VarSecinfo
from nfpipe.errors import SpecError
from nfpipe.toolchain.compiler import compile as nf_compile, wheel_clang

# --- compiling test objects ----------------------------------------------------------




class Obj:
    """A compiled object: its ELF sections and the parsed .BTF / .BTF.ext."""

    def __init__(self, path, source):
        self.path, self.source = path, source
        with open(path, "rb") as f:
            elf = ELFFile(f)
            self.sections = {s.name: s for s in elf.iter_sections()}
            self.index = {s.name: i for i, s in enumerate(elf.iter_sections())}
            self.btf_raw = self.sections[".BTF"].data()
            ext = self.sections.get(".BTF.ext")
            self.ext_raw = ext.data() if ext is not None else None
            self.symbols = [(s.name, s["st_value"], s["st_size"], s["st_shndx"],
                             s["st_info"]["type"])
                            for s in elf.get_section_by_name(".symtab").iter_symbols()]
            self.data = {n: (bytes(s["sh_size"]) if s["sh_type"] == "SHT_NOBITS"
                             else s.data()) for n, s in self.sections.items()}
        self.btf = BTF.parse(self.btf_raw)
        self.ext = BTFExt.parse(self.ext_raw, self.btf) if self.ext_raw else None

    def sym_offsets(self, section):
        idx = self.index[section]
        return {n: v for n, v, _sz, shndx, typ in self.symbols
                if shndx == idx and typ == "STT_OBJECT"}

    def fixup(self, section):
        self.btf.fixup_datasec(section, self.sections[section]["sh_size"],
                               self.sym_offsets(section))

    def line_of(self, needle):
        for i, text in enumerate(self.source.splitlines(), 1):
            if needle in text:
                return i
        raise AssertionError(needle)


def build(tmp_path_factory, source, name="obj"):
    d = tmp_path_factory.mktemp(name)
    src = d / f"{name}.c"
    src.write_text(source)
    # BTF_KIND_ENUM64 and friends: the fixture comes from the clang that emits them (the
    # wheel's; clang 14 predates ENUM64), whichever compiler the run uses for the rest
    return Obj(nf_compile(src, compiler=wheel_clang()), source)


SOURCE = r"""
#include <linux/types.h>
#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

typedef unsigned int u32_t;

struct key {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 flags;
};

struct bits {
	unsigned int a : 3;
	unsigned int b : 5;
	int c : 7;
	struct { __u16 x; __u16 y; };
	union { __u32 u; __u8 ub[4]; } un;
	char name[8] __attribute__((btf_decl_tag("label")));
};

union val { __u64 v; __u32 w[2]; };

enum color { RED = 0, GREEN = 1, BLUE = -1 };
enum big { SMALL = 1, HUGE = 0x123456789ULL };

struct opaque;

struct {
	__uint(type, 1);                /* BPF_MAP_TYPE_HASH */
	__uint(max_entries, 1024);
	__type(key, struct key);
	__type(value, __u64);
} flows SEC(".maps");

volatile const __u32 cfg_threshold = 7;
const volatile struct bits cfg_bits = { .a = 5, .c = -3, .x = 9, .name = "hi" };
__u64 counter = 5;
double ratio = 1.5;
__u32 zeroed;
struct key last_key;
enum color col = GREEN;
enum big bg;
union val uv;
u32_t arr[4] = {1, 2, 3, 4};
struct opaque *op;
int __attribute__((btf_type_tag("user"))) *uptr;
static volatile __u32 hidden = 3;

static __attribute__((noinline)) int helper(int x, struct key *k)
{
	return x + k->port + hidden;
}

SEC("xdp") int prog(void *ctx)
{
	struct key k = {};
	k.port = cfg_threshold;
	counter += helper(3, &k);
	last_key = k;
	static __u32 calls;

	calls++;
	zeroed++;
	return 2;
}

char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def obj(tmp_path_factory):
    return build(tmp_path_factory, SOURCE, "types")


def resolve(btf, tid):
    return btf[btf.skip_mods(tid)]


# --- types -----------------------------------------------------------------------------


def test_types_list_and_protocol(obj):
    btf = obj.btf
    assert btf.types[0].kind == Kind.VOID and btf.type_name(0) == "void"
    assert len(btf) == len(btf.types) > 40
    ids = [i for i, _t in btf]
    assert ids == list(range(len(btf)))
    assert all(btf[i] is t for i, t in btf)
    with pytest.raises(KeyError):
        btf[len(btf)]


def test_struct_plain(obj):
    btf = obj.btf
    t = btf[btf.find("key", Kind.STRUCT)]
    assert isinstance(t, Struct) and t.kind == Kind.STRUCT and t.size == 8
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in t.members] == [
        ("addr", 0, 0), ("port", 32, 0), ("proto", 48, 0), ("flags", 56, 0)]
    assert [btf.type_name(m.type) for m in t.members] == ["__u32", "__u16", "__u8", "__u8"]
    u32 = btf[btf.find("__u32")]
    assert isinstance(u32, Typedef)
    base = btf[u32.type]
    assert base == Int("unsigned int", 4, 0, 0, 32)
    assert btf.skip_mods(btf.find("__u32")) == u32.type


def test_struct_bitfields_and_anonymous_members(obj):
    btf = obj.btf
    t = btf[btf.find("struct bits")]
    assert t.size == 20
    m = {mm.name: mm for mm in t.members}
    assert (m["a"].bit_offset, m["a"].bitfield_size) == (0, 3)
    assert (m["b"].bit_offset, m["b"].bitfield_size) == (3, 5)
    assert (m["c"].bit_offset, m["c"].bitfield_size) == (8, 7)
    assert btf[m["c"].type] == Int("int", 4, SIGNED, 0, 32)
    anon = [mm for mm in t.members if mm.name == ""]
    assert len(anon) == 1 and anon[0].bit_offset == 16
    inner = btf[anon[0].type]
    assert isinstance(inner, Struct) and inner.name == "" and inner.size == 4
    assert [x.name for x in inner.members] == ["x", "y"]
    un = btf[m["un"].type]
    assert isinstance(un, Union) and un.kind == Kind.UNION and un.name == "" and un.size == 4
    assert [(x.name, x.bit_offset) for x in un.members] == [("u", 0), ("ub", 0)]
    assert btf.type_name(un.members[1].type) == "__u8[4]"
    assert m["name"].bit_offset == 96
    char = btf[btf[m["name"].type].type]
    assert char.name == "char" and char.size == 1 and char.encoding & SIGNED
    # the decl tag names struct bits and the index of member 'name'
    tags = [x for _i, x in btf if x.kind == Kind.DECL_TAG]
    assert [(x.name, btf[x.type].name, x.component_idx) for x in tags] == [
        ("label", "bits", 5)]


def test_union_enum_enum64(obj):
    btf = obj.btf
    u = btf[btf.find("union val")]
    assert isinstance(u, Union) and u.size == 8
    assert [btf.type_name(x.type) for x in u.members] == ["__u64", "__u32[2]"]
    color = btf[btf.find("color")]
    assert isinstance(color, Enum) and color.kind == Kind.ENUM and color.size == 4
    assert color.signed and color.values == [("RED", 0), ("GREEN", 1), ("BLUE", -1)]
    big = btf[btf.find("enum big")]
    assert big.kind == Kind.ENUM64 and big.size == 8 and not big.signed
    assert big.values == [("SMALL", 1), ("HUGE", 0x123456789)]
    assert btf.size_of(btf.find("big")) == 8


def test_typedef_const_volatile_ptr_fwd_typetag(obj):
    btf = obj.btf
    var = btf[btf.find("cfg_threshold", Kind.VAR)]
    c = btf[var.type]
    assert isinstance(c, Const)
    v = btf[c.type]
    assert isinstance(v, Volatile) and btf.type_name(v.type) == "__u32"
    assert btf.type_name(var.type) == "const volatile __u32"
    assert btf.skip_mods(var.type) == btf.skip_mods(btf.find("__u32"))
    u32t = btf[btf.find("u32_t")]
    assert isinstance(u32t, Typedef) and btf[u32t.type].name == "unsigned int"
    op = btf[btf.find("op", Kind.VAR)]
    p = btf[op.type]
    assert isinstance(p, Ptr) and btf[p.type] == Fwd("opaque", False)
    assert btf.type_name(op.type) == "struct opaque *"
    uptr = btf[btf.find("uptr", Kind.VAR)]
    tag = btf[btf[uptr.type].type]
    assert isinstance(tag, TypeTag) and tag.name == "user" and btf[tag.type].name == "int"
    assert btf.size_of(uptr.type) == 8
    ratio = resolve(btf, btf[btf.find("ratio", Kind.VAR)].type)
    assert ratio.kind == Kind.FLOAT and ratio.name == "double" and ratio.size == 8


def test_arrays(obj):
    btf = obj.btf
    arr = btf[btf.find("arr", Kind.VAR)]
    a = btf[arr.type]
    assert isinstance(a, Array) and a.nelems == 4 and btf.type_name(a.type) == "u32_t"
    assert btf.size_of(arr.type) == 16
    assert btf.type_name(arr.type) == "u32_t[4]"
    lic = btf[btf.find("_license", Kind.VAR)]
    assert btf.type_name(lic.type) == "char[4]"


def test_functions(obj):
    btf = obj.btf
    prog = btf[btf.find("prog", Kind.FUNC)]
    assert isinstance(prog, Func) and prog.linkage == 1
    proto = btf[prog.type]
    assert isinstance(proto, FuncProto) and btf[proto.ret].name == "int"
    assert [(p.name, btf.type_name(p.type)) for p in proto.params] == [("ctx", "void *")]
    helper = btf[btf.find("helper")]
    assert helper.linkage == 0
    assert btf.type_name(btf.find("helper")) == "int helper(int x, struct key *k)"
    assert [btf.type_name(p.type) for p in btf[helper.type].params] == ["int", "struct key *"]


def test_btf_map_definition(obj):
    btf = obj.btf
    vars_ = btf.datasec_vars(".maps")
    assert [v[0] for v in vars_] == ["flows"]
    name, _off, size, vid = vars_[0]
    var = btf[vid]
    assert isinstance(var, Var) and var.name == "flows" and size == 32
    st = resolve(btf, var.type)
    assert isinstance(st, Struct) and st.name == "" and st.size == 32
    fields = {m.name: m for m in st.members}
    assert list(fields) == ["type", "max_entries", "key", "value"]

    def nelems(member):
        ptr = btf[btf.skip_mods(member.type)]
        assert ptr.kind == Kind.PTR
        arr = btf[btf.skip_mods(ptr.type)]
        assert arr.kind == Kind.ARRAY
        return arr.nelems

    assert nelems(fields["type"]) == 1
    assert nelems(fields["max_entries"]) == 1024
    assert btf.type_name(fields["max_entries"].type) == "int (*)[1024]"
    key = btf[fields["key"].type]
    assert key.kind == Kind.PTR and btf.type_name(key.type) == "struct key"
    assert btf.size_of(key.type) == 8
    assert btf.type_name(fields["value"].type) == "__u64 *"
    assert btf.size_of(btf[fields["value"].type].type) == 8


# --- DATASEC -------------------------------------------------------------------------------


@pytest.mark.parametrize("section,names", [
    (".data", {"counter", "ratio", "col", "arr"}),
    (".rodata", {"cfg_threshold", "cfg_bits"}),
    (".bss", {"zeroed", "last_key", "bg", "uv", "op", "uptr"}),
])
def test_datasec_vars_and_fixup(tmp_path_factory, section, names):
    o = build(tmp_path_factory, SOURCE, "dsec")
    btf = o.btf
    ds = btf[btf.find(section, Kind.DATASEC)]
    assert isinstance(ds, Datasec)
    syms = o.sym_offsets(section)
    before = {n: off for n, off, _sz, _t in btf.datasec_vars(section)}
    assert names <= set(before)
    # clang leaves them zero (libbpf fixes them up) or already right: never anything else
    for n in names:
        assert before[n] in (0, syms[n])
    assert ds.size in (0, o.sections[section]["sh_size"])
    o.fixup(section)
    after = btf.datasec_vars(section)
    assert ds.size == o.sections[section]["sh_size"]
    for n, off, size, vid in after:
        if n in syms:
            assert off == syms[n]
        assert size == btf.size_of(btf[vid].type)
    offs = [a[1] for a in after]
    assert offs == sorted(offs)                 # the kernel wants them in order
    # the fixed-up section decodes to the values of the C initializers
    value = Codec.for_type(btf, btf.find(section, Kind.DATASEC)).decode(o.data[section])
    if section == ".data":
        assert value == {**value, "counter": 5, "ratio": 1.5, "col": 1, "arr": [1, 2, 3, 4]}
    elif section == ".rodata":
        assert value["cfg_threshold"] == 7
        assert value["cfg_bits"] == {"a": 5, "b": 0, "c": -3, "x": 9, "y": 0,
                                     "un": {"u": 0, "ub": b"\0" * 4},
                                     "name": b"hi" + b"\0" * 6}
    else:
        assert value == {**value, "zeroed": 0, "bg": 0, "op": 0, "uptr": 0,
                         "uv": {"v": 0, "w": [0, 0]},
                         "last_key": {"addr": 0, "port": 0, "proto": 0, "flags": 0}}


def test_static_variables(tmp_path_factory):
    o = build(tmp_path_factory, SOURCE, "static")
    btf = o.btf
    before = {}
    for sec in (".data", ".bss"):
        for n, off, _s, vid in btf.datasec_vars(sec):
            before[n] = (sec, off, btf[vid].linkage)
    # a function-local static is named like its ELF symbol, "function.variable"
    assert before["hidden"][2] == 0 and before["prog.calls"][2] == 0   # static linkage
    assert before["counter"][2] == 1
    for sec in (".data", ".bss"):
        syms = o.sym_offsets(sec)
        for n, (s, off, linkage) in before.items():
            if s == sec and linkage == 0:
                assert off == syms[n]          # clang fills in static variables' offsets
        o.fixup(sec)
    found = {n: (off, sec) for sec in (".data", ".bss") for n, off, _s, _v in
             btf.datasec_vars(sec)}
    off, sec = found["hidden"]
    assert o.data[sec][off:off + 4] == struct.pack("<I", 3)
    # static variables missing from the offsets keep theirs; globals may not be missing
    btf2 = BTF.parse(o.btf_raw)
    syms = {n: v for n, v in o.sym_offsets(".bss").items() if n != "prog.calls"}
    btf2.fixup_datasec(".bss", o.sections[".bss"]["sh_size"], syms)
    assert dict((n, off) for n, off, _s, _v in btf2.datasec_vars(".bss"))["prog.calls"] == \
        o.sym_offsets(".bss")["prog.calls"]


def test_fixup_datasec_errors(obj):
    btf = BTF.parse(obj.btf_raw)
    with pytest.raises(SpecError, match="no DATASEC named '.nope'"):
        btf.fixup_datasec(".nope", 8, {})
    with pytest.raises(SpecError, match="no symbol gives the offset of variable 'counter'"):
        btf.fixup_datasec(".data", 64, {"ratio": 8, "col": 16, "arr": 20})
    btf = BTF.parse(obj.btf_raw)
    with pytest.raises(SpecError, match="does not fit"):
        btf.fixup_datasec(".data", 8, {"counter": 0, "ratio": 8, "col": 16, "arr": 20})


def test_fixup_datasec_sorts_by_offset(obj):
    btf = BTF.parse(obj.btf_raw)
    names = [n for n, *_ in btf.datasec_vars(".data") if n != "hidden"]
    offsets, at = {}, 0
    for n in reversed(names):                      # lay them out in the opposite order
        offsets[n] = at
        at += 16 + 8
    btf.fixup_datasec(".data", at, offsets)
    got = [(n, off) for n, off, _s, _t in btf.datasec_vars(".data") if n in offsets]
    assert got == sorted(offsets.items(), key=lambda kv: kv[1])
    assert [n for n, _ in got] == list(reversed(names))


def test_datasec_vars_absent(obj):
    assert obj.btf.datasec_vars(".kconfig") == []


def test_codec_refuses_unfixed_datasec(obj):
    btf = BTF.parse(obj.btf_raw)
    if btf[btf.find(".data", Kind.DATASEC)].size:
        pytest.skip("this compiler fills in DATASEC sizes")
    with pytest.raises(SpecError, match="fixup_datasec"):
        Codec.for_type(btf, btf.find(".data", Kind.DATASEC))


# --- .BTF.ext ------------------------------------------------------------------------------


def test_func_info(obj):
    ext = obj.ext
    assert ext.func_info_rec_size == 8 and ext.line_info_rec_size == 16
    assert set(ext.func_info) == {"xdp", ".text"}
    assert len(ext.func_info["xdp"]) == 1 and len(ext.func_info[".text"]) == 1
    fi = ext.func_info["xdp"][0]
    assert fi.insn_off == 0 and obj.btf[fi.type_id].name == "prog"
    assert obj.btf[ext.func_info[".text"][0].type_id].name == "helper"
    assert fi.pack(7) == struct.pack("<II", 7, fi.type_id)
    assert ext.core_relos == {}


def test_line_info_points_at_the_source(obj):
    ext = obj.ext
    lines = ext.line_info["xdp"]
    assert len(lines) >= 5 and len(ext.line_info[".text"]) >= 1
    size = obj.sections["xdp"]["sh_size"]
    assert all(0 <= li.insn_off < size and li.insn_off % 8 == 0 for li in lines)
    assert [li.insn_off for li in lines] == sorted(li.insn_off for li in lines)
    first = lines[0]
    assert first.insn_off == 0 and first.line == obj.line_of('SEC("xdp") int prog')
    assert ext.line_text(first) == 'SEC("xdp") int prog(void *ctx)'
    assert ext.file_name(first).endswith("types.c")
    z = [li for li in lines if "zeroed++" in ext.line_text(li)]
    assert z and all(li.line == obj.line_of("zeroed++;") for li in z)
    assert z[0].col == obj.source.splitlines()[z[0].line - 1].index("++") + 1
    assert ext.line_text(ext.line_info[".text"][0]).strip() == "return x + k->port + hidden;"
    rec = first.pack(3)
    assert rec == struct.pack("<IIII", 3, first.file_name_off, first.line_off, first.line_col)


def test_core_relocations_are_detected(tmp_path_factory):
    src = r"""
#define SEC(n) __attribute__((section(n), used))
struct task { int pid; int tgid; } __attribute__((preserve_access_index));
SEC("xdp") int prog(struct task *t) { return t->tgid; }
char _license[] SEC("license") = "GPL";
"""
    o = build(tmp_path_factory, src, "core")
    relos = o.ext.core_relos["xdp"]
    assert len(relos) == 1
    r = relos[0]
    assert o.btf[r.type_id].name == "task" and o.ext.access_str(r) == "0:1"
    assert r.kind == 0 and r.kind_name == "field_byte_offset"


def _ext_blob(func_recs, line_recs, rec_func=8, rec_line=16, sec_name_off=1):
    def block(rec_size, recs):
        if not recs:
            return b""
        body = struct.pack("<III", rec_size, sec_name_off, len(recs))
        for r in recs:
            body += r.ljust(rec_size, b"\xee")
        return body
    f, li = block(rec_func, func_recs), block(rec_line, line_recs)
    hdr = struct.pack("<HBBIIIIIII", 0xEB9F, 1, 0, 32, 0, len(f), len(f), len(li),
                      len(f) + len(li), 0)
    return hdr + f + li


def test_ext_larger_records_are_kept(obj):
    blob = _ext_blob([struct.pack("<II", 16, 5)], [struct.pack("<IIII", 8, 1, 1, 7 << 10 | 3)],
                     rec_func=12, rec_line=20)
    ext = BTFExt.parse(blob, obj.btf)
    sec = obj.btf.string_at(1)
    assert ext.func_info_rec_size == 12 and ext.line_info_rec_size == 20
    fi = ext.func_info[sec][0]
    assert (fi.insn_off, fi.type_id) == (16, 5)
    assert fi.pack(2) == struct.pack("<II", 2, 5) + b"\xee" * 4
    li = ext.line_info[sec][0]
    assert (li.insn_off, li.line, li.col) == (8, 7, 3)
    assert len(li.pack(1)) == 20


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b"\x00\x00" + b[2:], "bad magic"),
    (lambda b: b[:10], "too short|truncated"),
    (lambda b: b[:-4], "truncated"),
    (lambda b: b[:32] + struct.pack("<I", 4) + b[36:], "record size 4 is invalid"),
    (lambda b: b[:36] + struct.pack("<I", 0x7FFFFF) + b[40:], "out of range"),
    (lambda b: b[:12] + struct.pack("<I", 400) + b[16:], "truncated: func_info"),
])
def test_ext_corrupt(obj, mutate, match):
    blob = _ext_blob([struct.pack("<II", 0, 1)], [struct.pack("<IIII", 0, 1, 1, 1 << 10)])
    BTFExt.parse(blob, obj.btf)                         # the unmutated blob is fine
    with pytest.raises(SpecError, match=match) as ei:
        BTFExt.parse(mutate(blob), obj.btf)
    assert ei.value.section == ".BTF.ext"


# --- queries ---------------------------------------------------------------------------


def test_find(obj):
    btf = BTF.parse(obj.btf_raw)
    sid = btf.find("key")
    assert btf[sid].kind == Kind.STRUCT
    assert btf.find("key", Kind.STRUCT) == sid == btf.find("struct key")
    assert btf.find("opaque") == btf.find("opaque", Kind.FWD)
    assert btf.find("enum big") == btf.find("big", Kind.ENUM64)
    with pytest.raises(KeyError, match="no BTF type STRUCT named 'missing'"):
        btf.find("missing", Kind.STRUCT)
    with pytest.raises(KeyError):
        btf.find("key", Kind.UNION)
    with pytest.raises(KeyError):
        btf.find("")
    # edits are seen
    new = btf.add_type(Typedef("fresh_t", sid))
    assert btf.find("fresh_t") == new
    btf[new].name = "renamed_t"
    with pytest.raises(KeyError):
        btf.find("fresh_t")


def test_size_of(obj):
    btf = obj.btf
    assert btf.size_of(btf.find("struct key")) == 8
    assert btf.size_of(btf.find("struct bits")) == 20
    assert btf.size_of(btf.find("union val")) == 8
    assert btf.size_of(btf.find("color")) == 4
    assert btf.size_of(btf.find("u32_t")) == 4
    assert btf.size_of(btf.find("cfg_bits", Kind.VAR)) == 20
    assert btf.size_of(btf[btf.find("op", Kind.VAR)].type) == 8
    for bad in (0, btf.find("prog"), btf.find("opaque"), btf[btf.find("prog")].type):
        with pytest.raises(SpecError, match="has no size"):
            btf.size_of(bad)


def test_type_name(obj):
    btf = BTF.parse(obj.btf_raw)
    assert btf.type_name(btf.find("__u32")) == "__u32"
    assert btf.type_name(btf.find("struct key")) == "struct key"
    assert btf.type_name(btf.find("union val")) == "union val"
    assert btf.type_name(btf.find("enum color")) == "enum color"
    assert btf.type_name(btf.find(".data")) == 'SEC(".data")'
    assert btf.type_name(btf.find("cfg_bits")) == "const volatile struct bits cfg_bits"
    tid = btf.add_type(Ptr(btf.find("struct key")))
    assert btf.type_name(tid) == "struct key *"
    cp = btf.add_type(Const(tid))
    assert btf.type_name(cp) == "struct key *const"
    ar = btf.add_type(Array(btf.find("__u8"), btf.find("__ARRAY_SIZE_TYPE__"), 16))
    assert btf.type_name(ar) == "__u8[16]"
    ar2 = btf.add_type(Array(ar, btf.find("__ARRAY_SIZE_TYPE__"), 2))
    assert btf.type_name(ar2) == "__u8[2][16]"          # C: an array of 2 __u8[16]
    fp = btf.add_type(Ptr(btf[btf.find("prog")].type))
    assert btf.type_name(fp) == "int (*)(void *ctx)"


def test_strings(obj):
    btf = BTF.parse(obj.btf_raw)
    off = btf.find("key")
    name_off = btf.add_string("key")
    assert btf.string_at(name_off) == "key"
    assert btf.add_string("") == 0 and btf.string_at(0) == ""
    n = len(btf.strings)
    new = btf.add_string("brand_new_name")
    assert new == n and btf.string_at(new) == "brand_new_name"
    assert btf.add_string("brand_new_name") == new
    with pytest.raises(SpecError, match="string offset 99999 is out of range"):
        btf.string_at(99999)
    with pytest.raises(ValueError):
        btf.add_string("a\0b")
    assert off


# --- encoding ------------------------------------------------------------------------------


def test_encode_round_trip_identical(obj):
    assert obj.btf.encode() == obj.btf_raw
    again = BTF.parse(obj.btf.encode())
    assert again.types == obj.btf.types


def test_encode_after_edits(obj):
    btf = BTF.parse(obj.btf_raw)
    old_strings = btf.strings
    key = btf.find("struct key")
    u8 = btf.find("__u8")
    btf[key].members.append(Member("extra", u8, 64))
    btf[key].size = 12
    btf[key].name = "key2"
    new_id = btf.add_type(Struct("added", 4, [Member("lo", u8, 0, 4), Member("hi", u8, 4, 4)]))
    e64 = btf.add_type(Enum("neg64", 8, [("M", -5)], signed=True))
    btf.add_type(Int("_Bool", 1, BOOL))
    btf.add_type(Int("char", 1, CHAR | SIGNED))
    raw = btf.encode()
    again = BTF.parse(raw)
    assert again.types == btf.types
    assert again.find("key2") == key and again.size_of(key) == 12
    assert again[new_id].members[1] == Member("hi", u8, 4, 4)
    assert again[e64].values == [("M", -5)] and again[e64].kind == Kind.ENUM64
    assert again.strings.startswith(old_strings)     # line_info offsets stay valid
    assert again.encode() == raw
    # the header is well-formed
    magic, ver, flags, hdr_len, toff, tlen, soff, slen = struct.unpack_from("<HBBIIIII", raw)
    assert (magic, ver, flags, hdr_len, toff, soff) == (0xEB9F, 1, 0, 24, 0, tlen)
    assert 24 + tlen + slen == len(raw)


def test_encode_rejects_bad_values():
    btf = BTF()
    btf.add_type(Struct("s", 4, [Member("m", 0, 0, 300)]))
    with pytest.raises(ValueError, match="bitfield size 300"):
        btf.encode()
    btf = BTF()
    btf.add_type(Ptr(-1))
    with pytest.raises(ValueError, match="cannot encode BTF type 1"):
        btf.encode()


def test_empty_btf_round_trips():
    btf = BTF()
    assert len(btf) == 1
    raw = btf.encode()
    assert BTF.parse(raw).types == btf.types
    i = btf.add_type(Int("int", 4, SIGNED))
    btf.add_type(Var("v", i, 1))
    btf.add_type(Datasec(".data", 4, [VarSecinfo(2, 0, 4)]))
    again = BTF.parse(btf.encode())
    assert again.datasec_vars(".data") == [("v", 0, 4, 2)]


# --- corrupt input -----------------------------------------------------------------------


def _hdr(raw):
    return struct.unpack_from("<HBBIIIII", raw)


def _patch_u32(raw, off, value):
    return raw[:off] + struct.pack("<I", value) + raw[off + 4:]


def _first_ptr_offset(raw):
    """Byte offset of the first PTR record in *raw* (clang's object starts with one)."""
    _m, _v, _f, hdr_len, toff, *_ = _hdr(raw)
    pos = hdr_len + toff
    info = struct.unpack_from("<I", raw, pos + 4)[0]
    assert (info >> 24) & 0x1F == Kind.PTR
    return pos


def test_corrupt_bad_magic(obj):
    with pytest.raises(SpecError, match="bad magic 0x0000") as ei:
        BTF.parse(b"\0\0" + obj.btf_raw[2:])
    assert "not BTF" in str(ei.value) and ei.value.section == ".BTF"


def test_corrupt_big_endian(obj):
    with pytest.raises(SpecError, match="big-endian"):
        BTF.parse(b"\xeb\x9f" + obj.btf_raw[2:])


@pytest.mark.parametrize("cut", [3, 20, 30, -1, -100])
def test_corrupt_truncated(obj, cut):
    with pytest.raises(SpecError, match="too short|truncated"):
        BTF.parse(obj.btf_raw[:cut])


def test_corrupt_type_section_truncated(obj):
    raw = obj.btf_raw
    _m, _v, _f, hdr_len, toff, tlen, soff, slen = _hdr(raw)
    # shrink the type section so its last record is cut in half
    bad = _patch_u32(raw, 12, tlen - 6)
    with pytest.raises(SpecError, match="truncated"):
        BTF.parse(bad)


def test_corrupt_type_id_out_of_range(obj):
    raw = obj.btf_raw
    pos = _first_ptr_offset(raw)
    n = len(obj.btf)
    with pytest.raises(SpecError, match=f"type 1 \\(PTR ''\\): target refers to type id "
                                        f"{n + 50}, which is out of range"):
        BTF.parse(_patch_u32(raw, pos + 8, n + 50))
    # a struct member too
    btf = BTF.parse(raw)
    btf[btf.find("struct key")].members[2].type = 10**5
    with pytest.raises(SpecError, match="member 'proto' refers to type id 100000"):
        BTF.parse(btf.encode())


def test_corrupt_string_offset_out_of_range(obj):
    raw = obj.btf_raw
    *_, slen = _hdr(raw)
    btf_pos = _first_ptr_offset(raw)
    # the INT record right after PTR(1) -> ARRAY(3)? use the first named type instead
    for tid, t in obj.btf:
        if t.name:
            break
    pos = btf_pos
    for _i in range(1, tid):
        pos += _record_len(raw, pos)
    with pytest.raises(SpecError, match=f"string offset {slen + 7} is out of range"):
        BTF.parse(_patch_u32(raw, pos, slen + 7))


def _record_len(raw, pos):
    info = struct.unpack_from("<I", raw, pos + 4)[0]
    kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
    extra = {Kind.INT: 4, Kind.ARRAY: 12, Kind.VAR: 4, Kind.DECL_TAG: 4}.get(kind, 0)
    per = {Kind.STRUCT: 12, Kind.UNION: 12, Kind.ENUM: 8, Kind.ENUM64: 12,
           Kind.FUNC_PROTO: 8, Kind.DATASEC: 12}.get(kind, 0)
    return 12 + extra + per * vlen


def test_corrupt_misc(obj):
    raw = obj.btf_raw
    with pytest.raises(SpecError, match="unsupported version 2"):
        BTF.parse(raw[:2] + b"\x02" + raw[3:])
    with pytest.raises(SpecError, match="header length 8"):
        BTF.parse(_patch_u32(raw, 4, 8))
    pos = _first_ptr_offset(raw)
    with pytest.raises(SpecError, match="unknown kind 31"):
        BTF.parse(_patch_u32(raw, pos + 4, 31 << 24))
    _m, _v, _f, hdr_len, toff, tlen, soff, slen = _hdr(raw)
    s0 = hdr_len + soff
    with pytest.raises(SpecError, match="does not start with an empty string"):
        BTF.parse(raw[:s0] + b"x" + raw[s0 + 1:])
    with pytest.raises(SpecError, match="does not end with a NUL"):
        BTF.parse(raw[:-1] + b"x")


# --- vmlinux -----------------------------------------------------------------------------


VMLINUX = "/sys/kernel/btf/vmlinux"


@pytest.fixture(scope="module")
def vmlinux():
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is absent (kernel without BTF)")
    with open(VMLINUX, "rb") as f:
        raw = f.read()
    t0 = time.perf_counter()
    btf = BTF.parse(raw)
    return btf, raw, time.perf_counter() - t0


def test_vmlinux_parses_fast(vmlinux):
    btf, _raw, took = vmlinux
    assert len(btf) > 10_000
    assert took < 2.0, f"parsing vmlinux BTF took {took:.2f}s"
    t0 = time.perf_counter()
    btf.find("sk_buff", Kind.STRUCT)
    btf.find("task_struct")
    assert time.perf_counter() - t0 < 1.0


def test_vmlinux_known_types(vmlinux):
    btf = vmlinux[0]
    xdp = btf[btf.find("struct xdp_md")]
    assert xdp.size == 24
    assert [(m.name, m.bit_offset // 8, btf.type_name(m.type)) for m in xdp.members][:5] == [
        ("data", 0, "__u32"), ("data_end", 4, "__u32"), ("data_meta", 8, "__u32"),
        ("ingress_ifindex", 12, "__u32"), ("rx_queue_index", 16, "__u32")]
    attr = btf.find("union bpf_attr")
    u = btf[attr]
    assert isinstance(u, Union) and u.size >= 120 and u.size % 8 == 0
    assert u.size == max(btf.size_of(m.type) for m in u.members)
    assert btf.size_of(btf.find("struct iphdr")) == 20
    assert btf.size_of(btf.find("struct ethhdr")) == 14
    assert btf.size_of(btf.find("struct __sk_buff")) > 100
    assert btf.type_name(btf.find("__be32")) == "__be32"
    c = Codec.for_type(btf, attr)
    assert c.size == u.size and "map_type" in c.keys


def test_vmlinux_round_trip(vmlinux):
    btf, raw, _t = vmlinux
    assert btf.encode() == raw


# --- the kernel's opinion ------------------------------------------------------------------


@pytest.mark.kernel
def test_kernel_accepts_encoded_btf(tmp_path_factory):
    """BPF_BTF_LOAD takes what encode() writes once DATASECs are fixed up, and not before."""
    sc = pytest.importorskip("nfpipe.kernel.syscall")
    o = build(tmp_path_factory, SOURCE, "kernel")
    raw_unfixed = o.btf.encode()
    if not o.btf[o.btf.find(".data", Kind.DATASEC)].size:
        with pytest.raises(sc.BtfLoadError):
            sc.btf_load(raw_unfixed).close()
    for _tid, t in list(o.btf):
        if t.kind == Kind.DATASEC and t.name in o.sections:
            o.fixup(t.name)
    raw = o.btf.encode()
    fd = sc.btf_load(raw)
    try:
        back = sc.btf_data(fd)
    finally:
        fd.close()
    assert back == raw
    assert BTF.parse(back).types == o.btf.types
