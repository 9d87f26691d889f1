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
