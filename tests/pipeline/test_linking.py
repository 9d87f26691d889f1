"""Pipelines in the kernel: tail-call and fused linking, both hooks, same behaviour;
per-edge counters prove every edge was taken; a missing tail call is counted."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from nfpipe.compose import build, make_plan
from nfpipe.runtime.pipeline import Pipeline
from nfpipe.spec import PipelineSpec

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent.parent
TEXT = f"""
pipeline: split-guard
hook: HOOK
nodes:
  - id: split
    nf: {ROOT}/bpf/examples/split_l4.c
    ports: [out, udp]
    config: {{mark: 9}}
  - id: guard_tcp
    nf: {ROOT}/bpf/examples/ttl_guard.c
    config: {{min_ttl: 2}}
  - id: guard_udp
    nf: {ROOT}/bpf/examples/ttl_guard.c
    config: {{min_ttl: 10}}
edges:
  - split.out -> guard_tcp
  - split.udp -> guard_udp
  - guard_tcp.out -> pass
  - guard_udp.out -> tx
"""
XDP = {"pass": 2, "drop": 1, "tx": 3}
TC = {"pass": 0, "drop": 2, "tx": 7}

CASES = [   # packet, verdict
    (Ether() / IP(ttl=64) / TCP(dport=80), "pass"),
    (Ether() / IP(ttl=2) / TCP(dport=80), "drop"),      # guard_tcp: ttl <= 2
    (Ether() / IP(ttl=64) / UDP(dport=53), "tx"),
    (Ether() / IP(ttl=9) / UDP(dport=53), "drop"),      # guard_udp: ttl <= 10
]


@pytest.fixture(params=[("xdp", "tailcall"), ("xdp", "fused"), ("tc", "tailcall"),
                        ("tc", "fused")], ids=lambda p: f"{p[0]}-{p[1]}")
def pipeline(request, nfpipe_pipeline):
    """TEXT loaded for one hook and linking by nfpipe's pytest fixture (closed after)."""
    hook, linking = request.param
    return nfpipe_pipeline(TEXT, hook="xdp" if hook == "xdp" else "tc-ingress",
                           linking=linking)


def test_verdicts_and_every_edge_counted(pipeline):
    codes = XDP if pipeline.plan.hook == "xdp" else TC
    for pkt, verdict in CASES:
        res = pipeline.test_run(pkt)
        assert res.retval == codes[verdict], (pkt.summary(), verdict)
        assert res.data == bytes(pkt)
    edges = pipeline.edge_counts()
    assert edges == {"split.out -> guard_tcp": 2, "split.udp -> guard_udp": 2,
                     "guard_tcp.out -> pass": 1, "guard_udp.out -> tx": 1}
    st = pipeline.stats()
    assert st["guard_tcp"]["drop"].packets == 1 and st["guard_udp"]["drop"].packets == 1
    assert "tail_call_miss" not in st["split"]
    if pipeline.plan.linking == "fused":
        assert pipeline.fused_style == "inline"      # small enough to inline every node
    assert st["split"]["out"].bytes == sum(len(p) for p, _ in CASES if TCP in p)
    # per-node maps are the node's own
    assert sum(pipeline.node_maps("guard_tcp")["dropped"][0]) == 1
    assert sum(pipeline.node_maps("guard_udp")["dropped"][0]) == 1


def test_plan_orders_entry_first_and_assigns_slots(pipeline):
    plan = pipeline.plan
    assert [n.id for n in plan.order] == ["split", "guard_tcp", "guard_udp"]
    d = plan.to_dict()
    assert d["nodes"][0]["ports"] == {"out": "guard_tcp (slot 1)", "udp": "guard_udp (slot 2)"}
    assert 'digraph "split-guard"' in plan.dot()


def test_missing_tail_call_takes_the_fallback_and_is_counted(nfpipe_pipeline):
    p = nfpipe_pipeline(TEXT, hook="xdp", linking="tailcall")
    jmp = p.objects["split"].maps["nfp_jmp"]
    del jmp[2]                                        # guard_udp's slot
    res = p.test_run(Ether() / IP(ttl=64) / UDP(dport=53))
    assert res.retval == XDP["drop"]                  # the miss verdict, not a leak
    assert p.stats()["split"]["tail_call_miss"].packets == 1


@pytest.mark.parametrize("hook", ["xdp", "tc-ingress"])
def test_program_array_is_filled_by_slot_not_by_order(hook):
    """An update keeps every node in its slot, so slots and plan order can differ: each
    node's program must sit at its own slot of nfp_jmp from the moment the pipeline is
    loaded (the throwaway test run of an update, and the swap, rely on it before the
    manifest's slots are ever rewritten)."""
    spec = PipelineSpec.from_text(TEXT.replace("HOOK", hook), "split.yaml")
    slots = {"split": 0, "guard_tcp": 5, "guard_udp": 2}        # order says 0, 1, 2
    plan = make_plan(spec, linking="tailcall", slots=slots)
    assert [(n.id, n.index) for n in plan.order] == list(slots.items())
    with Pipeline.load(build(plan)) as p:
        jmp = p.objects["split"].maps["nfp_jmp"]
        for n in plan.order:
            assert jmp.get(n.index) == p.objects[n.id].programs[n.id].id, n.id
        assert jmp.get(1) is None                                   # no node there
        codes = XDP if hook == "xdp" else TC
        for pkt, verdict in CASES:
            assert p.test_run(pkt).retval == codes[verdict], pkt.summary()
        assert "tail_call_miss" not in p.stats()["split"]
        assert p.edge_counts()["split.udp -> guard_udp"] == 2


def test_a_fused_program_too_large_to_inline_is_remembered(tmp_path, monkeypatch):
    """Inlined with its metadata on the stack, examples/edge.yaml exceeds the verifier's
    budget (512 bytes of stack in a call chain; the builder's own estimate, which would
    move the metadata to the per-CPU map, is switched off here): the first load finds
    that out (a whole verification) and remembers it in the cache, so the next load of
    the same object goes straight to the per-node functions."""
    monkeypatch.setenv("NFPIPE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(importlib.import_module("nfpipe.compose.build"), "stack_depth",
                        lambda prog: 0)
    import nfpipe.runtime.pipeline as rt
    loads = []
    real = rt.Object.load

    def counting(ospec, **kw):
        loads.append(ospec.path)
        return real(ospec, **kw)

    monkeypatch.setattr(rt.Object, "load", counting)
    spec = PipelineSpec.from_file(ROOT / "examples" / "edge.yaml")
    pkt = Ether() / IP(ttl=64) / TCP(dport=22)
    results = []
    for _ in range(2):
        loads.clear()
        with Pipeline.load(build(make_plan(spec, linking="fused"))) as p:
            assert p.fused_style == "calls"
            results.append((len(loads), p.test_run(pkt).retval))
        assert len(list((tmp_path / "verifier").glob("too-large-*"))) == 1
    assert results[0][0] == 2 and results[1][0] == 1, results   # inline tried only once
    assert results[0][1] == results[1][1]


TWO_FILTERS = """
pipeline: two-filters
hook: HOOK
nodes:
  - id: fw_a
    nf: filter
    config:
      classifier: compiled
      rules: [{action: drop, proto: udp}, {action: "port:1", proto: tcp, dport: [22, 23]}]
  - id: fw_b
    nf: filter
    config:
      classifier: linear
      rules: [{action: drop, proto: tcp, dport: 80}, {action: drop, proto: tcp, dport: 22}]
edges:
  - fw_a.out -> fw_b
  - fw_a.port1 -> pass
  - fw_b.out -> tx
"""


@pytest.mark.parametrize("linking", ["tailcall", "fused"])
@pytest.mark.parametrize("hook", ["xdp", "tc-ingress"])
def test_a_compiled_filter_beside_a_linear_one(nfpipe_pipeline, hook, linking):
    """Node fw_a has its rules compiled in, fw_b (the same NF, linear) reads them from its maps:
    each keeps its own rules, in one fused program too, and counts its own hits."""
    from nfpipe.catalog.filter import Filter
    p = nfpipe_pipeline(TWO_FILTERS, hook=hook, linking=linking)
    codes = XDP if p.plan.hook == "xdp" else TC
    assert p.plan.nodes["fw_a"].defines and not p.plan.nodes["fw_b"].defines
    if linking == "fused":           # fw_a's define holds for fw_a's copy of filter.c only
        from nfpipe.compose.fused import fused_source
        text = fused_source(p.plan)
        marks = ["#define NFP_INSTANCE fw_a", "#define NFP_FILTER_COMPILED",
                 "#undef NFP_FILTER_COMPILED", "#define NFP_INSTANCE fw_b"]
        assert [text.index(m) for m in marks] == sorted(text.index(m) for m in marks)
    cases = [(Ether() / IP() / UDP(dport=53), "drop"),
             (Ether() / IP() / TCP(dport=22), "pass"),       # fw_a's port1, before fw_b
             (Ether() / IP() / TCP(dport=23), "pass"),
             (Ether() / IP() / TCP(dport=80), "drop"),       # fw_b
             (Ether() / IP() / TCP(dport=81), "tx")]
    for pkt, verdict in cases:
        assert p.test_run(pkt).retval == codes[verdict], (pkt.summary(), verdict)
    a = p.plan.spec.nodes["fw_a"].impl
    b = p.plan.spec.nodes["fw_b"].impl
    assert isinstance(a, Filter) and a.hits(p.node_maps("fw_a")) == [1, 2]
    assert b.hits(p.node_maps("fw_b")) == [1, 0]
