"""The hand-written programs `nfpipe bench` compares nfpipe with (benchmarks/handwritten/)
do the same work: a benchmark against a program that judges packets differently would
prove nothing."""
from __future__ import annotations

import pytest

from nfpipe import resources
from nfpipe.bench.kernel import firewall_config
from nfpipe.catalog.filter import Filter
from nfpipe.loader import Object
from nfpipe.nfabi import Verdict
from nfpipe.toolchain import compile as nf_compile
from tests.nf.test_filter import SEED_CASES, _frags

pytestmark = pytest.mark.kernel
XDP_DROP, XDP_PASS = 1, 2


def test_the_hand_written_firewall_gives_the_seeds_verdicts():
    nf = Filter(firewall_config())          # the rules `nfpipe bench` gives nfpipe
    path = resources.data_dir("benchmarks") / "handwritten" / "firewall.c"
    packets = {**{k: bytes(p) for k, (p, _) in SEED_CASES.items()}, **_frags()}
    with Object.load(nf_compile(path)) as obj:
        prog = obj.programs["firewall"]
        for name, data in packets.items():
            want = nf.model().run(data)[0]
            code = XDP_DROP if want == int(Verdict.DROP) else XDP_PASS
            assert prog.test_run(data).retval == code, (name, want)


@pytest.mark.parametrize("n", range(1, 9))
def test_the_hand_written_chain_makes_every_jump(n):
    """chain.c, as `nfpipe bench` fills it for chainN: hop0 runs, then hop1 .. hop{n-1}
    by tail calls. A dropper put in slot n ends the packet only if every jump happened
    (each hop calls the slot after its own); without it the last hop passes."""
    hand = resources.data_dir("benchmarks") / "handwritten"
    packet = bytes(64)
    with Object.load(nf_compile(hand / "chain.c")) as obj, \
            Object.load(nf_compile(hand / "xdp_drop.c")) as drop:
        hops = obj.maps["hops"]
        for i in range(1, n):
            hops[i] = obj.programs[f"hop{i}"]
        assert obj.programs["hop0"].test_run(packet).retval == XDP_PASS
        hops[n] = drop.programs["xdp_drop"]
        assert obj.programs["hop0"].test_run(packet).retval == XDP_DROP
        if n > 1:                               # a gap before slot n: the chain stops there
            del hops[n - 1]
            assert obj.programs["hop0"].test_run(packet).retval == XDP_PASS
