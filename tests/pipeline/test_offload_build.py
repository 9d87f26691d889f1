"""The offload build of a pipeline, on the host kernel (no offload device needed).

It is the fused program with every node constant compiled in: no .rodata/.data/
.bss map (the kernel gives device-bound programs no direct value access), no
per-CPU or prog-array map, maps sized by the device profile.  Loaded unbound, it
runs under BPF_PROG_TEST_RUN and must give the plain build's verdicts and
counters for every packet and config.  The device path itself is tested in the
offload VM (offload/test_offload_vm.py).
"""
from __future__ import annotations

import errno
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from nfpipe.compose import build, make_plan
from nfpipe.compose.offload import compiled_in_constants, offload_build
from nfpipe.errors import KernelError, SpecError
from nfpipe.loader.object import Object
from nfpipe.loader.specs import PERCPU_MAP_TYPES, PROG_ARRAY
from nfpipe.runtime.pipeline import Pipeline
from nfpipe.spec import PipelineSpec
from tests.nf.test_user_nf import TABLE_NF

ROOT = Path(__file__).parent.parent.parent


def split_guard(tcp_ttl: int, udp_ttl: int, mark: int = 9) -> PipelineSpec:
    return PipelineSpec.from_text(f"""
pipeline: offl-sg
hook: xdp
linking: fused
nodes:
  - id: split
    nf: {ROOT}/bpf/examples/split_l4.c
    ports: [out, udp]
    config: {{mark: {mark}}}
  - id: guard_tcp
    nf: {ROOT}/bpf/examples/ttl_guard.c
    config: {{min_ttl: {tcp_ttl}}}
  - id: guard_udp
    nf: {ROOT}/bpf/examples/ttl_guard.c
    config: {{min_ttl: {udp_ttl}}}
edges:
  - split.out -> guard_tcp
  - split.udp -> guard_udp
  - guard_tcp.out -> pass
  - guard_udp.out -> tx
""")


PACKETS = [Ether() / IP(ttl=t) / (UDP() if udp else TCP()) for t in (1, 2, 5, 9, 64)
           for udp in (False, True)]


def test_offload_build_has_no_global_data_and_is_sized_by_the_profile():
    b = build(make_plan(split_guard(2, 10)))
    plain = b.objects["<fused>"]
    assert any(m.is_global_data for m in plain.maps.values())       # the constants
    assert plain.maps["nfp_stats"].type in PERCPU_MAP_TYPES
    ob = offload_build(b, "netdevsim")
    assert ob.ok, ob.problems
    maps = ob.spec.maps
    assert not [m.name for m in maps.values() if m.is_global_data]
    assert not [m.name for m in maps.values() if m.type in PERCPU_MAP_TYPES or
                m.type == PROG_ARRAY]
    assert max(m.max_entries for m in maps.values()) == 2           # netdevsim holds 2
    assert all(m.flags == 0 for m in maps.values())
    text = ob.explain()
    assert "map 'nfp_stats': yes - array, 2 entries on the device; sized down from 1024" \
        in text, text
    assert "constants: yes - 3 compiled in" in text
    # nfp has no entry limit in its profile: its build keeps the sizes
    assert offload_build(b, "nfp").spec.maps["nfp_stats"].max_entries == 1024


def test_constants_become_typed_c_expressions():
    b = build(make_plan(split_guard(2, 10, mark=70000)))
    from nfpipe.compose.fused import fused_constants
    c = compiled_in_constants(b.objects["<fused>"], fused_constants(b.plan))
    assert c["guard_tcp__min_ttl"] == "((__typeof__(guard_tcp__nfp_default_min_ttl))(2))"
    assert c["split__mark"].endswith("(70000))")


@pytest.mark.kernel
@pytest.mark.parametrize("ttls", [(2, 10), (1, 1), (64, 5)])
def test_offload_build_gives_the_plain_builds_verdicts_and_counters(ttls):
    b = build(make_plan(split_guard(*ttls)))
    ob = offload_build(b, "nfp")        # sizes kept: every counter can be compared
    with Pipeline.load(b) as plain, Pipeline.load(b, offload=ob) as off:
        want = [plain.test_run(p).retval for p in PACKETS]
        got = [off.test_run(p).retval for p in PACKETS]
        assert got == want
        assert off.stats() == plain.stats()
        assert set(off.objects["<fused>"].maps) == {"guard_tcp__dropped",
                                                    "guard_udp__dropped", "nfp_stats"}


@pytest.mark.kernel
def test_a_config_change_is_a_new_offload_build():
    """Constants are compiled in: a new value is a new program, not a new .rodata."""
    pkt = Ether() / IP(ttl=5) / TCP()
    verdicts = []
    for ttl in (2, 9):
        b = build(make_plan(split_guard(ttl, 1)))
        with Pipeline.load(b, offload=offload_build(b, "netdevsim")) as p:
            verdicts.append(p.test_run(pkt).retval)
    assert verdicts == [2, 1]           # ttl 5 > 2 passes; ttl 5 <= 9 is dropped


@pytest.mark.kernel
def test_binding_to_a_device_without_offload_is_refused_by_the_kernel():
    """Loopback is no offload device: the kernel refuses the bound map (EINVAL)."""
    b = build(make_plan(split_guard(2, 10)))
    ob = offload_build(b, "netdevsim")
    with pytest.raises(KernelError) as exc:
        Pipeline.load(b, offload=ob, device=1).close()
    assert exc.value.errno in (errno.EINVAL, errno.EOPNOTSUPP, 524), exc.value


def test_an_object_with_global_data_is_never_bound():
    """.rodata cannot be read by an offloaded program: refused before any bpf() call."""
    b = build(make_plan(split_guard(2, 10)))
    with pytest.raises(SpecError, match=r"global data \(.*\.rodata.*no direct value access"):
        Object.load(b.objects["<fused>"], ifindex=1)


def test_a_const_table_is_named_as_global_data(tmp_path):
    nf = tmp_path / "table.c"
    nf.write_text(TABLE_NF)             # a static const table, as users write one
    spec = PipelineSpec.from_text(f"pipeline: offl-tab\nhook: xdp\nmode: offload\nnodes:\n"
                                  f"  - {{id: t, nf: {nf}}}\nedges:\n  - t -> pass\n")
    ob = offload_build(build(make_plan(spec)), "netdevsim")
    assert not ob.ok
    assert any("is global data (.rodata" in p for p in ob.problems), ob.problems


def test_an_array_constant_is_compiled_in_and_the_plan_says_what_cannot_go():
    """examples/edge.yaml's NAT has array constants (internal_net[16]): the offload build
    compiles them in (it failed to compile, undeclared, before), and what keeps the
    pipeline off the NIC is listed per node, not a compile error."""
    spec = PipelineSpec.from_file(ROOT / "examples" / "edge.yaml")
    ob = offload_build(build(make_plan(spec, linking="fused")), "netdevsim")
    assert not ob.ok
    assert "node 'nat': map 'conns' is a lru_hash map; netdevsim offload supports array, " \
           "hash" in ob.problems
    # the filter's offload flavour has no LPM tries: what keeps it off is its rule set
    assert "node 'fw': 2 rules need 2 linear entries (one per combination of a rule's " \
           "sport, dport and vlan ranges); an offloaded filter holds 1 linear entry and 1 " \
           "rule per generation (the device's map size; no RFC tables)" in ob.problems


def test_plan_mode_offload_explains_a_file_with_auto_linking(capsys):
    """`nfpipe plan FILE --mode offload` on a file that says `linking: auto` (the
    shipped split-guard): planned fused, as deploy --mode offload builds it, with the
    offload check's verdict per node, map and helper."""
    from nfpipe.cli.main import main
    from nfpipe.spec import PipelineSpec
    example = Path(__file__).resolve().parents[2] / "examples" / "split-guard.yaml"
    spec = PipelineSpec.from_file(example)
    assert make_plan(spec).linking == "tailcall"
    assert make_plan(spec, mode="offload").linking == "fused"
    assert make_plan(spec, mode="offload", linking="tailcall").linking == "tailcall"
    assert main(["plan", str(example), "--mode", "offload"]) == 0
    out = capsys.readouterr().out
    assert "linking fused" in out and "offload (nfp): yes" in out, out
    assert "map 'nfp_stats': yes - array" in out, out
