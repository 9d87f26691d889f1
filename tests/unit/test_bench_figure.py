"""`nfpipe bench --png`: one figure of a run, a panel per part that has numbers, drawn
from the run's JSON (so a saved run can be drawn later)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from nfpipe.bench import figure
from nfpipe.errors import UsageError

KERNEL = [{"case": "baseline", "ns_per_packet": 28.0},
          {"case": "fw-udp-handwritten", "ns_per_packet": 31.0},
          {"case": "fw-udp-fused", "ns_per_packet": 40.0},
          {"case": "fw-udp-tailcall", "ns_per_packet": 42.0}]
LIVE = [{"config": c, "packet": p, "ns_per_packet": n, "skipped": ""}
        for c, p, n in [("xdp-drop", "udp", 92), ("nfpipe-xdp-native", "udp", 109),
                        ("nftables", "udp", 542), ("xdp-drop", "tcp80", 98),
                        ("nfpipe-xdp-native", "tcp80", 114)]] + \
       [{"config": "xdp-filter", "packet": "udp", "ns_per_packet": None,
         "skipped": "xdp-filter not installed"}]
CONTROL = [{"case": "deploy-warm", "seconds": 0.43}, {"case": "destroy", "seconds": 0.015}]


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_each_part_of_a_run_gets_its_panel(tmp_path):
    one, three = tmp_path / "k.png", tmp_path / "all.png"
    assert figure.write_png(KERNEL, one) == ["kernel"]
    assert figure.write_png({"cases": KERNEL, "results": LIVE, "control": CONTROL},
                            three) == ["kernel", "live", "control"]
    (w1, h1), (w3, h3) = png_size(one), png_size(three)
    assert w1 == w3 and h3 > 2 * h1                   # three panels stacked
    assert figure.panels({"results": LIVE[-1:]}) == []   # a skipped configuration: no bar


def test_a_run_without_numbers_is_refused(tmp_path):
    with pytest.raises(UsageError, match="nothing to draw"):
        figure.write_png({"results": LIVE[-1:], "control": []}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_saved_runs_are_drawn_from_their_json_in_one_figure(tmp_path):
    runs = {"kernel.json": KERNEL, "live.json": {"results": LIVE},
            "control.json": {"control": CONTROL}}
    for name, data in runs.items():
        (tmp_path / name).write_text(json.dumps(data))
    out = tmp_path / "run.png"
    r = subprocess.run([sys.executable, "-m", "nfpipe.bench.figure", *runs, str(out)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"{out}: kernel, live, control", \
        r.stderr
    assert png_size(out) == png_size_of_all(tmp_path)


def png_size_of_all(tmp_path):
    ref = tmp_path / "ref.png"
    figure.write_png({"cases": KERNEL, "results": LIVE, "control": CONTROL}, ref)
    return png_size(ref)
