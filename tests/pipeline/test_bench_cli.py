"""`nfpipe bench` runs its cases in the kernel and reports ratios (no time is asserted)."""
from __future__ import annotations

import json

import pytest

from nfpipe.cli.main import main

pytestmark = pytest.mark.kernel


def test_bench_json_reports_every_selected_case(capsys):
    assert main(["bench", "chain1", "--repeat", "200", "--rounds", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["case"] for r in rows] == ["baseline", "chain1-tailcall", "chain1-fused"]
    assert rows[0]["ratio_to_baseline"] == 1.0
    assert all(r["ns_per_packet"] > 0 and len(r["samples"]) == 1 for r in rows)
