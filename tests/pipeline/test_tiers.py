"""Tiered placement, on the host kernel: the NIC's program (the offload build of the
pipeline's offloadable prefix) and the host's (the whole pipeline, resuming at a
handed-over node) together give the verdicts the whole pipeline gives.  Both run
under BPF_PROG_TEST_RUN, the hand-over record carried in the XDP metadata area
from one run to the next, as the driver carries it from the NIC to the host
(``nic_then_host``; offload/guest.py runs it in the offload VM's kernel as well)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from nfpipe.compose import build, make_plan
from nfpipe.compose.offload import offload_build
from nfpipe.compose.tiers import tiered_build
from nfpipe.runtime.pipeline import Pipeline
from nfpipe.spec import PipelineSpec

ROOT = Path(__file__).parent.parent.parent
XDP_PASS = 2
HANDOVER = 32                       # bytes of struct nfp_handover


def spec(tail: str = "telemetry") -> PipelineSpec:
    return PipelineSpec.from_text(f"""pipeline: tiers
hook: xdp
linking: fused
nodes:
  - {{id: split, nf: {ROOT}/bpf/examples/split_l4.c, ports: [out, udp], config: {{mark: 5}}}}
  - {{id: gt, nf: {ROOT}/bpf/examples/ttl_guard.c, config: {{min_ttl: 2}}}}
  - {{id: gu, nf: {ROOT}/bpf/examples/ttl_guard.c, config: {{min_ttl: 8}}}}
  - {{id: t, nf: {tail}}}
edges:
  - split.out -> gt
  - split.udp -> gu
  - gt -> t
  - gu -> drop
  - t -> pass
""")


def test_the_prefix_goes_to_the_nic_and_the_reason_is_given():
    tb, why = tiered_build(build(make_plan(spec())), "netdevsim")
    assert tb is not None, why
    assert tb.nic_nodes == ["split", "gt", "gu"] and tb.resume == ["t"]
    assert "from node 't' on at native XDP" in tb.decisions[0]
    assert "t__flows" not in tb.nic.spec.maps and "gt__dropped" in tb.nic.spec.maps


def test_no_tiers_where_the_nic_cannot_hand_over():
    # nfp's helpers do not include bpf_xdp_adjust_meta: no metadata area to hand over in
    tb, why = tiered_build(build(make_plan(spec())), "nfp")
    assert tb is None and "bpf_xdp_adjust_meta" in why, why


def test_no_tiers_when_everything_fits():
    s = PipelineSpec.from_text(f"pipeline: tiers1\nhook: xdp\nlinking: fused\nnodes:\n"
                               f"  - {{id: g, nf: {ROOT}/bpf/examples/ttl_guard.c}}\n"
                               f"edges:\n  - g -> pass\n")
    tb, why = tiered_build(build(make_plan(s)), "netdevsim")
    assert tb is None and "no tiers needed" in why


def nic_then_host(b, tb) -> dict:
    """Each packet through the NIC tier's program, and where it hands over, through
    the host's from the hand-over record on: the verdict the whole pipeline gives.
    The host's alone (no record) runs the whole pipeline.  (offload/guest.py runs
    this in the offload VM too.)"""
    packets = [Ether() / IP(ttl=t) / (UDP() if u else TCP()) for t in (1, 2, 5, 9, 64)
               for u in (False, True)]
    handed = 0
    with Pipeline.load(b) as whole, Pipeline.load(b, offload=tb.nic) as nic, \
            Pipeline.load(tb.host) as host:
        for p in packets:
            raw = bytes(p)
            want = whole.test_run(raw).retval
            r = nic.test_run(raw)
            got = r.retval
            if got == XDP_PASS and len(r.data) == len(raw) + HANDOVER:
                handed += 1
                assert r.data[HANDOVER:] == raw
                magic_node, mark = struct.unpack_from("<II", r.data)
                assert magic_node == 0x6e700000 | b.plan.nodes["t"].index
                assert mark == 5                 # split's meta->mark, handed over
                # xdp_md: data, data_end, data_meta: the record in front of the packet
                ctx = struct.pack("<6I", HANDOVER, len(r.data), 0, 0, 0, 0)
                got = host.entry.test_run(r.data, ctx=ctx).retval
            assert got == want, p.summary()
            # the host alone (no record) runs the whole pipeline
            assert host.test_run(raw).retval == want
        assert handed == 3                       # TCP with ttl > 2
        assert host.stats()["t"]["out"].packets == 2 * handed   # resumed + run alone
    return {"packets": len(packets), "handed": handed}


@pytest.mark.kernel
def test_nic_then_host_gives_the_whole_pipelines_verdicts():
    """Where this kernel lets XDP programs call bpf_xdp_adjust_meta (the hand-over's
    metadata area) the two tiers give the whole pipeline's verdicts.  Some sandboxed
    kernels let none call it, as the helper probe finds: then neither tier loads, and
    the verifier's refusal names the helper (the offload VM runs the same check)."""
    from nfpipe.attach.features import probe_helpers
    from nfpipe.errors import VerifierError
    b = build(make_plan(spec()))
    tb, why = tiered_build(b, "netdevsim")
    assert tb is not None, why
    meta = probe_helpers()["bpf_xdp_adjust_meta"]
    if meta is not True:
        assert "cannot use helper bpf_xdp_adjust_meta" in meta, meta
        for tier in ({"offload": tb.nic}, {}):
            with pytest.raises(VerifierError, match="bpf_xdp_adjust_meta"):
                Pipeline.load(tb.host if not tier else b, **tier)
        return
    assert nic_then_host(b, tb) == {"packets": 10, "handed": 3}


def test_a_redirect_stays_on_the_host():
    """An offloaded program cannot redirect (the offload build would have sent
    redirect:IFACE to ifindex 0): the node with the redirect edge is refused for the
    NIC, by name, and a tiered placement keeps it on the host."""
    s = PipelineSpec.from_text(f"""pipeline: tiers-redirect
hook: xdp
linking: fused
nodes:
  - {{id: split, nf: {ROOT}/bpf/examples/split_l4.c, ports: [out, udp]}}
  - {{id: gt, nf: {ROOT}/bpf/examples/ttl_guard.c, config: {{min_ttl: 2}}}}
edges:
  - split.out -> gt
  - split.udp -> drop
  - gt -> redirect:lo
""")
    b = build(make_plan(s))
    full = offload_build(b, "netdevsim")
    assert not full.ok and full.bad_nodes == {"gt"}, full.problems
    assert full.problems == ["node 'gt': port 'out' -> redirect:lo: an offloaded program "
                             "cannot redirect to another interface (the redirect runs on "
                             "the host)"]
    tb, why = tiered_build(b, "netdevsim", full=full)
    assert tb is not None, why
    assert tb.nic_nodes == ["split"] and tb.resume == ["gt"], tb
