"""The fused program's stack: the builder reads each function's frame off the
instructions (nfpipe/loader/stack.py) and keeps the packet's metadata on the stack
only when every call chain then fits the verifier's 512 bytes; otherwise the metadata
goes to the per-CPU map, and the pipeline is still inlined."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether

from nfpipe.compose import FUSED, build, make_plan
from nfpipe.compose.build import read_spec
from nfpipe.compose.fused import FUSED_PROGRAM, compile_fused
from nfpipe.loader import Object
from nfpipe.loader.stack import MAX_STACK, frames, stack_depth
from nfpipe.runtime.pipeline import Pipeline, _sized_all, fused_constants
from nfpipe.spec import PipelineSpec

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent.parent
EDGE = ROOT / "examples" / "edge.yaml"
FIREWALL = ROOT / "examples" / "firewall.yaml"


def _spec(path: Path, hook: str) -> PipelineSpec:
    text = path.read_text().replace("../bpf/", f"{ROOT}/bpf/")
    text = re.sub(r"(?m)^hook: .*$", f"hook: {hook}", text)
    return PipelineSpec.from_text(text, path.name)


def _verifier_frames(plan, ospec) -> list[int]:
    """The frame of each function as the verifier counted it (its stats' "stack depth")."""
    with Object.load(_sized_all(ospec, plan), constants=fused_constants(plan),
                     log_level=4) as obj:
        log = obj.programs[FUSED_PROGRAM].verifier_log
    found = re.search(r"stack depth ([\d+]+)", log)
    assert found, log[-500:]
    return [int(x) for x in found.group(1).split("+")]


@pytest.mark.parametrize("path,hook", [(EDGE, "xdp"), (EDGE, "tc-ingress"), (FIREWALL, "xdp")],
                         ids=["edge-xdp", "edge-tc", "firewall-xdp"])
def test_the_frames_read_off_the_instructions_are_the_verifiers(path, hook):
    """Function by function, in the order of their instructions, the frames the builder
    reads are the ones the verifier reports having used."""
    plan = make_plan(_spec(path, hook), linking="fused")
    ospec = build(plan).objects[FUSED]
    depth, _calls = frames(ospec.programs[FUSED_PROGRAM])
    assert [depth[f] for f in sorted(depth)] == _verifier_frames(plan, ospec)


E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
PACKETS = [E / IP(src="198.51.100.20", dst="203.0.113.80") / TCP(sport=40000, dport=80),
           E / IP(src="10.0.0.5", dst="93.184.216.34") / TCP(sport=51000, dport=443),
           E / IP(src="198.51.100.20", dst="203.0.113.1", ttl=1) / ICMP(id=7),
           E / IP(src="198.51.100.20", dst="10.0.1.1") / TCP(dport=23),
           E / IP(src="198.51.100.20", dst="192.0.2.1") / TCP(dport=443)]


def _same_as_tail_calls(fused: Pipeline, spec: PipelineSpec) -> None:
    with Pipeline.load(build(make_plan(spec, linking="tailcall"))) as tail:
        for pkt in PACKETS:
            got, want = fused.test_run(pkt), tail.test_run(pkt)
            assert (got.retval, got.data) == (want.retval, want.data), pkt.summary()


@pytest.mark.parametrize("hook", ["xdp", "tc-ingress"])
def test_the_metadata_leaves_the_stack_only_when_a_call_chain_would_not_fit(hook):
    """examples/edge.yaml fused: built with its metadata on the stack, its deepest call
    chain (the program, the filter's map classifiers behind a call) takes what the
    estimate says; over 512 bytes (at XDP with the wheel's clang) the build moves the
    metadata to the per-CPU map, at or under it keeps it; either way the program loads
    inlined, with the tail-call pipeline's verdicts and rewrites."""
    spec = _spec(EDGE, hook)
    plan = make_plan(spec, linking="fused")
    deep = stack_depth(read_spec(compile_fused(plan)).programs[FUSED_PROGRAM]) > MAX_STACK
    b = build(plan)
    assert ("nfp_meta_map" in b.objects[FUSED].maps) == deep
    assert stack_depth(b.objects[FUSED].programs[FUSED_PROGRAM]) <= MAX_STACK
    with Pipeline.load(b) as fused:
        assert fused.fused_style == "inline"
        _same_as_tail_calls(fused, spec)


def test_the_metadata_in_the_per_cpu_map_decides_as_on_the_stack():
    """The seeds' firewall keeps its metadata on the stack (it fits); built with it in
    the per-CPU map instead, it decides every packet the same."""
    spec = _spec(FIREWALL, "xdp")
    plan = make_plan(spec, linking="fused")
    b = build(plan)
    assert "nfp_meta_map" not in b.objects[FUSED].maps
    b.objects[FUSED] = read_spec(compile_fused(plan, meta_on_stack=False))
    assert "nfp_meta_map" in b.objects[FUSED].maps
    with Pipeline.load(b) as fused:
        assert fused.fused_style == "inline"
        _same_as_tail_calls(fused, spec)
