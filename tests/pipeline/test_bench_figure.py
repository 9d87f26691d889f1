"""`nfpipe bench --png FILE` on a real run: the JSON is what it was, and the figure is
written beside it."""
from __future__ import annotations

import json

import pytest

from nfpipe.cli.main import main

pytestmark = pytest.mark.kernel


def test_a_kernel_run_is_drawn(tmp_path, capsys):
    png = tmp_path / "bench.png"
    assert main(["bench", "chain1", "--repeat", "200", "--rounds", "1", "--json",
                 "--png", str(png)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["case"] for r in rows] == ["baseline", "chain1-tailcall", "chain1-fused",
                                         "chain1-handwritten"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
