"""ELF → ObjectSpec without the kernel: sections, maps, global data, linking, refusals."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nfpipe.cli.main import main as cli_main
from nfpipe.errors import SpecError
from nfpipe.loader import insn as I
from nfpipe.loader.objspec import ObjectSpec

BPF = Path(__file__).parent.parent / "bpf"

HEAD = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
"""
LICENSE = 'char LICENSE[] SEC("license") = "Dual BSD/GPL";\n'


def spec_of(compile_c, body: str, name: str = "prog") -> ObjectSpec:
    return ObjectSpec.from_file(compile_c(HEAD + body + LICENSE, name))


def test_program_sections_give_types_attach_types_and_flags(compile_c):
    spec = spec_of(compile_c, """
SEC("xdp") int a(struct xdp_md *c) { return XDP_PASS; }
SEC("xdp.frags") int b(struct xdp_md *c) { return XDP_PASS; }
SEC("xdp/foo") int c(struct xdp_md *c) { return XDP_PASS; }
SEC("tc") int d(struct __sk_buff *s) { return 0; }
SEC("tcx/ingress") int e(struct __sk_buff *s) { return 0; }
SEC("tcx/egress") int f(struct __sk_buff *s) { return 0; }
SEC("classifier/bar") int g(struct __sk_buff *s) { return 0; }
SEC("socket") int h(struct __sk_buff *s) { return 0; }
""")
    got = {n: (p.section, p.type_name, p.expected_attach_type, p.flags)
           for n, p in spec.programs.items()}
    assert got == {
        "a": ("xdp", "xdp", 37, 0),
        "b": ("xdp.frags", "xdp", 37, 1 << 5),
        "c": ("xdp/foo", "xdp", 37, 0),
        "d": ("tc", "sched_cls", 0, 0),
        "e": ("tcx/ingress", "sched_cls", 46, 0),
        "f": ("tcx/egress", "sched_cls", 47, 0),
        "g": ("classifier/bar", "sched_cls", 0, 0),
        "h": ("socket", "socket_filter", 0, 0),
    }
    assert spec.license == "Dual BSD/GPL"


def test_unknown_section_is_a_clear_error(compile_c):
    with pytest.raises(SpecError) as info:
        spec_of(compile_c, 'SEC("frobnicate") int x(void *c) { return 0; }\n')
    assert "frobnicate" in str(info.value) and info.value.program == "x"


def test_btf_map_definitions(compile_c):
    spec = spec_of(compile_c, """
struct key { __u32 a; __u16 b; };
struct val { __u64 x[2]; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1000);
         __type(key, struct key); __type(value, struct val);
         __uint(map_flags, BPF_F_NO_PREALLOC); __uint(pinning, LIBBPF_PIN_BY_NAME); } h SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 3);
         __uint(key_size, 4); __uint(value_size, 12); } raw SEC(".maps");
struct inner { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 8);
               __type(key, __u32); __type(value, __u64); };
struct { __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS); __uint(max_entries, 4);
         __type(key, __u32); __array(values, struct inner); } outer SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
SEC("xdp") int p(struct xdp_md *c) {
    __u32 k = 0;
    bpf_map_lookup_elem(&h, &k); bpf_map_lookup_elem(&raw, &k);
    bpf_map_lookup_elem(&outer, &k); bpf_ringbuf_output(&rb, &k, 4, 0);
    return XDP_PASS;
}
""")
    h = spec.maps["h"]
    assert (h.type_name, h.key_size, h.value_size, h.max_entries, h.flags, h.pinning) == \
        ("hash", 8, 16, 1000, 1, 1)
    assert spec.btf.type_name(h.key_type_id) == "struct key"
    assert spec.btf.type_name(h.value_type_id) == "struct val"
    raw = spec.maps["raw"]
    assert (raw.type_name, raw.key_size, raw.value_size, raw.key_type_id) == ("array", 4, 12, 0)
    outer = spec.maps["outer"]
    assert outer.type_name == "hash_of_maps" and outer.value_size == 4
    assert (outer.inner.type_name, outer.inner.max_entries, outer.inner.value_size) == \
        ("array", 8, 8)
    assert spec.maps["rb"].type_name == "ringbuf"
    refs = sorted({r.map for r in spec.programs["p"].relocs})
    assert refs == ["h", "outer", "raw", "rb"]
    for r in spec.programs["p"].relocs:
        assert I.decode(spec.programs["p"].insns, r.insn).is_ld_imm64


def test_object_show_json_lists_programs_and_maps(compile_c, capsys):
    path = compile_c(HEAD + """
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 64);
         __type(key, __u32); __type(value, __u64); } seen SEC(".maps");
SEC("tc") int cls(struct __sk_buff *s) { __u32 k = s->len; bpf_map_lookup_elem(&seen, &k); return 0; }
""" + LICENSE)
    assert cli_main(["object", "show", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["programs"] == [{"name": "cls", "section": "tc", "type": "sched_cls",
                                "instructions": out["programs"][0]["instructions"],
                                "subprograms": [], "maps": ["seen"]}]
    assert {k: out["maps"][0][k] for k in ("name", "type", "key_size", "value_size",
                                           "max_entries")} == \
        {"name": "seen", "type": "lru_hash", "key_size": 4, "value_size": 8, "max_entries": 64}


def test_global_data_sections_become_maps_and_variables(compile_c):
    spec = spec_of(compile_c, """
volatile const __u32 limit = 100;
volatile const char tag[8] = "abc";
__u64 counter = 5;
__u32 zeroed;
SEC("xdp") int p(struct xdp_md *c) { counter += limit + tag[0]; zeroed++; return XDP_PASS; }
""")
    ro = spec.maps[".rodata"]
    assert ro.freeze and ro.flags & (1 << 7) and ro.max_entries == 1 and ro.key_size == 4
    assert spec.maps[".data"].data[:8] == (5).to_bytes(8, "little")
    assert spec.maps[".bss"].data == bytes(spec.maps[".bss"].value_size)
    assert spec.get_variable("limit") == 100
    assert spec.get_variable("tag") == b"abc\0\0\0\0\0"
    assert spec.get_variable("counter") == 5
    assert {r.map for r in spec.programs["p"].relocs} == {".rodata", ".data", ".bss"}
    assert all(r.kind == "map_value" for r in spec.programs["p"].relocs)

    edited = spec.copy()
    edited.set_constant("limit", 7)
    edited.set_constant("tag", b"xyz")
    assert edited.get_variable("limit") == 7 and spec.get_variable("limit") == 100
    assert edited.get_variable("tag") == b"xyz\0\0\0\0\0"
    with pytest.raises(SpecError, match="not .rodata"):
        edited.set_constant("counter", 1)
    with pytest.raises(SpecError, match="no global variable 'nope'"):
        edited.set_constant("nope", 1)
    with pytest.raises(SpecError, match="cannot set 'limit'"):
        edited.set_constant("limit", -1)


def test_subprograms_are_linked_after_the_program(compile_c):
    spec = spec_of(compile_c, """
static __noinline int twice(int x) { return x * 2; }
__noinline int global_fn(int x) { return twice(x) + 1; }
static __noinline int local_in_section(int x) { return x - 1; }
SEC("xdp") int a(struct xdp_md *c) { return local_in_section(global_fn(c->ingress_ifindex)) & 3; }
SEC("xdp") int b(struct xdp_md *c) { return twice(c->rx_queue_index) & 3; }
""")
    a, b = spec.programs["a"], spec.programs["b"]
    assert set(a.subprograms) == {"global_fn", "twice", "local_in_section"}
    assert b.subprograms == ["twice"]
    # Every subprogram call lands on an instruction inside the linked program, and
    # func_info has one record per function, sorted by instruction.
    for p in (a, b):
        n = p.insn_count
        calls = [i for i in range(n) if I.decode(p.insns, i).is_subprog_call]
        assert calls
        for i in calls:
            assert 0 <= i + I.decode(p.insns, i).imm + 1 < n
        assert len(p.func_info) == 1 + len(p.subprograms)
        assert [f[0] for f in p.func_info] == sorted(f[0] for f in p.func_info)
        assert p.line_info and p.line_info[0].insn == 0


def test_prog_array_values_name_programs(compile_c):
    spec = ObjectSpec.from_file(compile_c((BPF / "tailcall.c").read_text(), "tailcall"))
    assert spec.maps["jump"].contents == [(0, "stage0"), (1, "stage1")]
    assert set(spec.programs) == {"entry", "stage0", "stage1"}


def test_line_info_points_at_source(compile_c):
    spec = spec_of(compile_c, """
SEC("xdp") int p(struct xdp_md *c)
{
    return c->rx_queue_index ? XDP_DROP : XDP_PASS; /* the line */
}
""")
    texts = [li.text for li in spec.programs["p"].line_info]
    assert any("the line" in t for t in texts)
    assert all(li.file.endswith("prog.c") for li in spec.programs["p"].line_info)


def test_parsing_is_deterministic(compile_c):
    path = compile_c((BPF / "maps.c").read_text(), "maps")
    one, two = ObjectSpec.from_file(path), ObjectSpec.from_file(path)
    assert one.programs == two.programs
    assert one.maps == two.maps
    assert one.variables == two.variables


@pytest.mark.parametrize("body,needle", [
    ("""
struct S { int a; int b; } __attribute__((preserve_access_index));
SEC("xdp") int p(struct xdp_md *c) { struct S *s = (void *)(long)c->data; return s->b & 1; }
""", "CO-RE"),
    ("""
extern int bpf_some_kfunc(int x) __ksym;
SEC("xdp") int p(struct xdp_md *c) { return bpf_some_kfunc(1); }
""", "kfunc 'bpf_some_kfunc'"),
    ("""
extern int LINUX_KERNEL_VERSION __kconfig;
SEC("xdp") int p(struct xdp_md *c) { return LINUX_KERNEL_VERSION & 1; }
""", "extern variable"),
])
def test_unsupported_relocations_name_program_section_offset(compile_c, body, needle):
    with pytest.raises(SpecError) as info:
        spec_of(compile_c, body)
    err = info.value
    assert needle in str(err)
    assert (err.program, err.section) == ("p", "xdp")
    assert err.offset is not None


def test_core_relocations_inside_a_subprogram_are_refused_too(compile_c):
    """A libbpf-style object whose static helper (in .text) reads a struct through
    preserve_access_index: the loader applies no CO-RE relocation, so it must refuse
    the program, not load it silently unrelocated; a program that does not call the
    helper is fine."""
    body = """
struct S { int a; int b; } __attribute__((preserve_access_index));
static __attribute__((noinline)) int second(struct S *s) { return s->b; }
SEC("xdp") int p(struct xdp_md *c) { return second((void *)(long)c->data) & 1; }
SEC("xdp") int q(struct xdp_md *c) { return XDP_PASS; }
"""
    with pytest.raises(SpecError) as info:
        spec_of(compile_c, body)
    err = info.value
    assert "program 'p' (in its subprogram 'second') uses CO-RE relocations" in str(err)
    assert (err.program, err.section) == ("p", ".text") and err.offset is not None


def test_legacy_maps_section_is_refused(compile_c):
    with pytest.raises(SpecError, match="legacy 'maps' section"):
        spec_of(compile_c, """
struct bpf_map_def_x { unsigned int type, key_size, value_size, max_entries; };
struct bpf_map_def_x m SEC("maps") = { 1, 4, 4, 16 };
SEC("xdp") int p(struct xdp_md *c) { return XDP_PASS; }
""")


def test_not_elf_and_wrong_machine_and_truncated(tmp_path, compile_c):
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"this is not an ELF file at all" * 10)
    with pytest.raises(SpecError, match="not an ELF file") as info:
        ObjectSpec.from_file(junk)
    assert info.value.file == str(junk)

    host = shutil.which("true") or "/bin/true"
    with pytest.raises(SpecError, match="not for BPF"):
        ObjectSpec.from_file(host)

    good = compile_c(HEAD + 'SEC("xdp") int p(struct xdp_md *c) { return 2; }\n' + LICENSE)
    cut = tmp_path / "cut.o"
    cut.write_bytes(Path(good).read_bytes()[:300])
    with pytest.raises(SpecError):
        ObjectSpec.from_file(cut)

    with pytest.raises(SpecError, match="cannot read"):
        ObjectSpec.from_file(tmp_path / "missing.o")


def test_cli_error_is_one_paragraph_and_exit_2(tmp_path, capsys):
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"\x7fELF garbage")
    assert cli_main(["object", "show", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nfpipe: error: ") and str(junk) in err
    assert "\n\n" not in err.strip()
