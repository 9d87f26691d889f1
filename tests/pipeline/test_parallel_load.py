"""A tail-call pipeline's nodes load at once: the others start as soon as the first node
has made the shared maps.  When any node is refused, by the verifier or its NF, every
fd of every node is closed and the refusal raised is the first node's in the
pipeline's order; when all load, every node runs on the first node's shared maps."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from nfpipe.compose import build, make_plan
from nfpipe.errors import VerifierError
from nfpipe.nfabi import SHARED_MAPS
from nfpipe.runtime.pipeline import Pipeline
from nfpipe.spec import PipelineSpec

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent.parent
# an NF the verifier refuses: it reads the packet without a bounds check
BAD = """#include <nfpipe/nf.h>
static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	return *(volatile __u8 *)ctx->data ? NFP_PORT(0) : NFP_DROP;
}
"""


def _text(tmp_path: Path, bad: str | None) -> str:
    (tmp_path / "bad.c").write_text(BAD)

    def nf(node: str, default: str) -> str:
        return str(tmp_path / "bad.c") if node == bad else default
    guard = f"{ROOT}/bpf/examples/ttl_guard.c"
    return f"""
pipeline: par-load
hook: xdp
linking: tailcall
nodes:
  - id: first
    nf: {nf("first", guard)}
  - id: a
    nf: {nf("a", guard)}
  - id: b
    nf: {nf("b", guard)}
  - id: c
    nf: {nf("c", guard)}
edges: [first.out -> a, a.out -> b, b.out -> c, c.out -> pass]
"""


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_all_nodes_share_the_first_nodes_maps(tmp_path):
    built = build(make_plan(PipelineSpec.from_text(_text(tmp_path, None))))
    before = _fds()
    with Pipeline.load(built) as p:
        first = p.objects["first"]
        for n in ("a", "b", "c"):
            for m in SHARED_MAPS:
                assert p.objects[n].maps[m] is first.maps[m]
        r = p.test_run(bytes(Ether() / IP(ttl=64) / UDP(dport=53)))
        assert r.retval == 2                                 # XDP_PASS through all four
        assert set(p.edge_counts().values()) == {1}
    assert _fds() <= before


@pytest.mark.parametrize("bad", ["first", "b", "c"])
def test_a_refused_node_leaves_no_fd_and_its_error_is_raised(tmp_path, bad):
    built = build(make_plan(PipelineSpec.from_text(_text(tmp_path, bad))))
    before = _fds()
    for _ in range(3):
        with pytest.raises(VerifierError) as info:
            Pipeline.load(built)
        assert info.value.program == bad
    assert _fds() <= before


def test_a_failing_populate_leaves_no_fd(tmp_path, monkeypatch):
    """An NF's populate runs as its node loads, while later nodes verify; if it fails,
    they are still waited for and closed."""
    text = _text(tmp_path, None).replace(
        f"  - id: a\n    nf: {ROOT}/bpf/examples/ttl_guard.c\n",
        "  - id: a\n    nf: lb\n    config: {vips: [{vip: '10.1.0.1:80', backends: "
        "[{addr: '10.2.0.1:80'}]}]}\n")
    spec = PipelineSpec.from_text(text)
    built = build(make_plan(spec))
    impl = spec.nodes["a"].impl

    def broken(_maps):
        raise RuntimeError("populate failed")
    monkeypatch.setattr(impl, "populate", broken)
    before = _fds()
    with pytest.raises(RuntimeError, match="populate failed"):
        Pipeline.load(built)
    assert _fds() <= before


def test_a_reused_stats_map_is_every_nodes(tmp_path):
    """An update hands in the running nfp_stats: the first node and all the others
    count into it (and the counters the old programs wrote stay)."""
    built = build(make_plan(PipelineSpec.from_text(_text(tmp_path, None))))
    packet = bytes(Ether() / IP(ttl=64) / UDP(dport=53))
    with Pipeline.load(built) as old:
        old.test_run(packet)
        with Pipeline.load(built, reuse={"nfp_stats": old.stats_map}) as new:
            for n in ("first", "a", "b", "c"):
                assert new.objects[n].maps["nfp_stats"].id == old.stats_map.id
            new.test_run(packet)
            assert set(new.edge_counts().values()) == {2}
