"""``nfpipe bench --png FILE``: one figure of a run, what its table and JSON say.

A panel per part of the run that has numbers: in the kernel (ns per packet of each
case, the floor marked; the seeds' firewall beside its hand-written program), live
frames (ns of DUT CPU per frame, per configuration and packet kind), live frames at
10 / 1k / 10k rules (``--scale``), the control path (ms per step).  The input is the
run's JSON (what ``--json`` prints), so a figure can also be drawn later from saved
runs, all of them in one figure::

    python -m nfpipe.bench.figure kernel.json live.json scale.json control.json out.png

matplotlib is not one of nfpipe's dependencies: ``pip install 'nfpipe[bench]'``.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from nfpipe.errors import UsageError


def require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise UsageError("the figure needs matplotlib, which nfpipe does not depend on: "
                         "pip install 'nfpipe[bench]' (or matplotlib)") from None
    matplotlib.use("Agg")                      # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def panels(run: Mapping[str, Any]) -> list[str]:
    """Which panels a run's JSON gives: ``kernel``, ``live``, ``control``."""
    out = []
    if run.get("cases"):
        out.append("kernel")
    if any(r.get("ns_per_packet") for r in run.get("results") or []):
        out.append("live")
    if any(r.get("ns_per_packet") for r in run.get("scale") or []):
        out.append("scale")
    if any(r.get("seconds") for r in run.get("control") or []):
        out.append("control")
    return out


def write_png(run: Mapping[str, Any] | list, path: str | os.PathLike, *,
              title: str = "nfpipe bench") -> list[str]:
    """Draw *run* (a bench run's JSON; a bare list is the kernel cases) into the PNG
    *path*; returns the panels drawn.  UsageError when the run has no numbers."""
    run = {"cases": run} if isinstance(run, list) else run
    which = panels(run)
    if not which:
        raise UsageError("nothing to draw: the run has no measured case")
    plt = require_matplotlib()
    heights = {"kernel": max(2.5, 0.28 * len(run.get("cases") or ()) + 1),
               "live": max(2.5, 0.45 * len({r["config"] for r in run.get("results") or ()})
                           + 1),
               "scale": 3.0,
               "control": max(2.0, 0.35 * len(run.get("control") or ()) + 1)}
    fig, axes = plt.subplots(len(which), 1, figsize=(9, sum(heights[w] for w in which)),
                             gridspec_kw={"height_ratios": [heights[w] for w in which]},
                             squeeze=False)
    for ax, w in zip(axes[:, 0], which):
        {"kernel": _kernel, "live": _live, "scale": _scale, "control": _control}[w](ax, run)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    plt.close(fig)
    return which


def _kernel(ax, run) -> None:
    cases = run["cases"]
    names = [c["case"] for c in cases]
    ns = [c["ns_per_packet"] for c in cases]
    colors = [_color(n) for n in names]
    ax.barh(range(len(ns)), ns, color=colors)
    ax.set_yticks(range(len(ns)), names, fontsize=7)
    ax.invert_yaxis()
    base = next((c["ns_per_packet"] for c in cases if c["case"] == "baseline"), None)
    if base:
        ax.axvline(base, color="grey", linestyle="--", linewidth=1)
        ax.text(base, -0.6, " floor", color="grey", fontsize=7, va="bottom")
    for i, v in enumerate(ns):
        ax.text(v, i, f" {v:.0f}", va="center", fontsize=6)
    ax.set_xlabel("ns per packet in the kernel (BPF_PROG_TEST_RUN, median)")
    ax.set_title("in the kernel", fontsize=9, loc="left")


def _color(case: str) -> str:
    if case.endswith("-handwritten") or case == "baseline":
        return "#7f7f7f"
    if case.endswith("-fused"):
        return "#1f77b4"
    if case.endswith("-tailcall"):
        return "#ff7f0e"
    return "#2ca02c"


def _grouped(ax, groups: list, series: list, value, *, horizontal: bool) -> list[float]:
    """Bars of value(group, series) for every series side by side within each group;
    returns the ticks' positions (the middle of each group)."""
    width = 0.8 / max(1, len(series))
    for k, name in enumerate(series):
        pos = [i + k * width for i in range(len(groups))]
        vals = [value(g, name) or 0 for g in groups]
        if horizontal:
            ax.barh(pos, vals, height=width, label=name)
        else:
            ax.bar(pos, vals, width=width, label=name)
        for p, v in zip(pos, vals):
            if v and horizontal:
                ax.text(v, p, f" {v:.0f}", va="center", fontsize=6)
            elif v:
                ax.text(p, v, f"{v:.0f}", ha="center", va="bottom", fontsize=6)
    ax.legend(fontsize=7)
    return [i + width * (len(series) - 1) / 2 for i in range(len(groups))]


def _live(ax, run) -> None:
    rows = [r for r in run["results"] if r.get("ns_per_packet")]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    by = {(r["config"], r["packet"]): r["ns_per_packet"] for r in rows}
    ticks = _grouped(ax, configs, list(dict.fromkeys(r["packet"] for r in rows)),
                     lambda c, kind: by.get((c, kind)), horizontal=True)
    ax.set_yticks(ticks, configs, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ns of DUT CPU per frame received (live frames on a veth)")
    ax.set_title("live frames", fontsize=9, loc="left")


def _scale(ax, run) -> None:
    rows = [r for r in run["scale"] if r.get("ns_per_packet")]
    sizes = sorted({r["rules"] for r in rows})
    by = {(r["way"], r["rules"]): r["ns_per_packet"] for r in rows}
    ticks = _grouped(ax, sizes, list(dict.fromkeys(r["way"] for r in rows)),
                     lambda n, way: by.get((way, n)), horizontal=False)
    ax.set_xticks(ticks, [f"{n:,} rules" for n in sizes], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ns of DUT CPU per frame", fontsize=7)
    ax.set_title("live frames at scale (the frame matches the last rule)", fontsize=9,
                 loc="left")


def _control(ax, run) -> None:
    rows = [r for r in run["control"] if r.get("seconds")]
    ms = [r["seconds"] * 1000 for r in rows]
    ax.barh(range(len(rows)), ms, color="#9467bd")
    ax.set_yticks(range(len(rows)), [r["case"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    for i, v in enumerate(ms):
        ax.text(v, i, f" {v:.0f}", va="center", fontsize=6)
    ax.set_xlabel("ms of wall time (median)")
    ax.set_title("control path", fontsize=9, loc="left")


def merged(runs: list[Mapping[str, Any] | list]) -> dict[str, Any]:
    """Several runs' JSON (``bench``, ``bench --live``, ``bench --control``) as one."""
    out: dict[str, Any] = {}
    for run in runs:
        run = {"cases": run} if isinstance(run, list) else run
        for key, value in run.items():
            if isinstance(value, list):
                out.setdefault(key, []).extend(value)
            else:
                out.setdefault(key, value)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print("usage: python -m nfpipe.bench.figure RUN.json [RUN.json ...] OUT.png",
              file=sys.stderr)
        return 2
    runs = []
    for name in argv[:-1]:
        with open(name) as f:
            runs.append(json.load(f))
    drawn = write_png(merged(runs), argv[-1])
    print(f"{argv[-1]}: {', '.join(drawn)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
