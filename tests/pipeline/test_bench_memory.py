"""`nfpipe bench nat-1m`: the NAT's established path with its connection table full, a
million entries, and what the kernel charges for that table (no time is asserted)."""
from __future__ import annotations

import json
import re

import pytest

from nfpipe.cli.main import main

pytestmark = pytest.mark.kernel


def test_the_full_nat_table_is_measured_and_its_memory_reported(capsys):
    assert main(["bench", "nat-1m", "--repeat", "200", "--rounds", "1", "--json"]) == 0
    cases = {c["case"]: c for c in json.loads(capsys.readouterr().out)}
    assert set(cases) == {"baseline", "nat-1m"} and cases["nat-1m"]["ns_per_packet"] > 0
    m = re.fullmatch(r"conns: ([\d,]+) entries written of 1,048,576, (\d+) MiB of kernel "
                     r"memory", cases["nat-1m"]["note"])
    assert m, cases["nat-1m"]["note"]
    assert int(m.group(1).replace(",", "")) == 1_048_574
    assert int(m.group(2)) >= 1_048_576 * 24 >> 20       # at least keys and values


@pytest.mark.parametrize("n", [10, 1000])
def test_the_lb_cases_take_the_whole_path_through_n_backends(n):
    """The timed packet is a flow the Maglev table of n backends gives to the backend
    that is the VIP itself: balanced (a connection made), rewritten to the same bytes,
    so every in-kernel repeat measures the same path."""
    from nfpipe.catalog import lb as L
    from nfpipe.nfabi import Verdict
    from nfpipe.testing import load_nf
    factory, packet, repeat_safe = L.bench_cases()[f"lb-{n}-backends"]
    nf = factory()
    assert repeat_safe and sum(len(v.backends) for v in nf.plan.vips.values()) == n
    with load_nf(nf, "xdp") as loaded:
        run = loaded.run(packet)
        assert run.verdict is not Verdict.DROP and run.data == packet
        assert len(loaded.maps["conns"]) == 1                 # balanced: a connection
        assert "MiB of kernel memory" in nf.bench_note(loaded.maps)
