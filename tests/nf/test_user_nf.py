"""The programming model as a user meets it: bpf/examples/ttl_guard.c, built for both
hooks, and two instances of it inlined into one program with different constants."""
from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

import nfpipe
from nfpipe.catalog.base import SourceNF
from nfpipe.nfabi import Verdict
from nfpipe.testing import load_nf
from tests.nf.fused import two_instances

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent.parent
TTL_GUARD = ROOT / "bpf" / "examples" / "ttl_guard.c"


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_ttl_guard_standalone(hook):
    with load_nf(SourceNF(TTL_GUARD, {"min_ttl": 3}), hook) as nf:
        cases = [
            (Ether() / IP(ttl=64) / UDP(), 0),
            (Ether() / IP(ttl=4) / UDP(), 0),
            (Ether() / IP(ttl=3) / UDP(), Verdict.DROP),
            (Ether() / IPv6(hlim=1) / UDP(), Verdict.DROP),
            (Ether() / ARP(), 0),
        ]
        for pkt, want in cases:
            run = nf.run(pkt)
            assert run.result == want, pkt.summary()
            assert run.retval == nf.expected_retval(want)
            assert run.data == bytes(pkt)
        assert sum(nf.maps["dropped"][0]) == 2
        assert set(nf.maps) == {"dropped"}           # only this node's maps, by short name


def test_two_instances_fused_into_one_program(compile_c):
    spec = nfpipe.ObjectSpec.from_file(compile_c(two_instances(TTL_GUARD), "fused_ttl"))
    assert {"a__dropped", "b__dropped"} <= set(spec.maps)
    assert {"a__min_ttl", "b__min_ttl"} <= set(spec.variables)
    with nfpipe.Object.load(spec, constants={"a__min_ttl": 5, "b__min_ttl": 10}) as o:
        prog = o.programs["fused"]
        assert prog.test_run(Ether() / IP(ttl=4) / UDP()).retval == 1      # a drops
        assert prog.test_run(Ether() / IP(ttl=8) / UDP()).retval == 1      # a passes, b drops
        assert prog.test_run(Ether() / IP(ttl=11) / UDP()).retval == 2     # both pass
        assert sum(o.maps["a__dropped"][0]) == 1
        assert sum(o.maps["b__dropped"][0]) == 1
