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
