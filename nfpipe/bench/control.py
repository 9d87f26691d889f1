"""``nfpipe bench --control``: what the control path costs, in seconds of wall time.

Everything runs in this process through nfpipe's library calls (what a CLI command
does after its interpreter has started; ``import nfpipe.deploy`` costs another 0.3-0.4
s per command), on a veth of a topology of its own, with a state root of its own
under bpffs: nothing of a deployment on the machine is touched, and both are removed
afterwards.  Per round:

* ``deploy-cold``: examples/edge.yaml deployed with an empty compile cache (every NF
  compiled, the fused program's verifier budget found out again);
* ``deploy-warm``: the same after a destroy, the cache warm (what a redeploy costs);
* ``update-runtime``: one rule added to its filter (maps only, no program loaded);
* ``update-swap``: the ttl node's C config changed: that node's program is rebuilt,
  loaded and swapped in under traffic;
* ``destroy``.

Then for the filter alone with 10, 1k and 10k rules (``benchmark_rules``): the rule
set's ``build`` (parse and compile into tables, no kernel), the ``deploy`` of a one-node
pipeline holding it, and the live ``update`` to a set of the same size with one rule
changed.  The median of the rounds is kept; the times depend on the machine and its
load, so compare them within one run.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nfpipe import deploy as D, resources
from nfpipe.catalog.filter import Filter, benchmark_rules
from nfpipe.kernel import bpffs
from nfpipe.topo import Topology, new_run_id

TOPOLOGY = """topology: nfpctl
description: one interface to deploy onto
hosts:
  dut:
    interfaces:
      eth0: {addresses: [10.98.0.2/24]}
  peer:
    interfaces:
      eth0: {addresses: [10.98.0.1/24]}
links:
  - {endpoints: [dut:eth0, peer:eth0]}
"""
SCALES = (10, 1000, 10_000)
FILTER_PIPELINE = """pipeline: nfpctl-filter
hook: xdp
nodes:
  - id: fw
    nf: filter
    config: {default: allow}
edges: [fw.out -> pass]
"""


@dataclass
class ControlResult:
    case: str
    seconds: float | None = None                 # median of the rounds
    samples: list = field(default_factory=list)


def _drop_only(rules: list[dict]) -> list[dict]:
    """benchmark_rules sends packets to ports 1-7; a one-node pipeline wires only 'out'."""
    return [dict(r, action="drop") if str(r["action"]).startswith("port") else r
            for r in rules]


def _build(rules: list[dict]) -> Filter:
    """What a deploy or an update computes before touching the kernel."""
    nf = Filter({"rules": rules})
    if nf.linear is None:
        nf.tables                                   # noqa: B018 (compiled when first read)
    return nf


def _edge(tmp: Path, min_ttl: int) -> Path:
    """examples/edge.yaml with the ttl node's min_ttl, in *tmp* (its C NF by full path)."""
    text = (resources.examples_dir() / "edge.yaml").read_text()
    text = text.replace("../bpf/examples/", f"{resources.bpf_dir() / 'examples'}/")
    text = text.replace("config: {min_ttl: 1}", f"config: {{min_ttl: {min_ttl}}}")
    path = tmp / f"edge-{min_ttl}.yaml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def _cache(path: Path) -> Iterator[None]:
    old = os.environ.get("NFPIPE_CACHE_DIR")
    os.environ["NFPIPE_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("NFPIPE_CACHE_DIR", None)
        else:
            os.environ["NFPIPE_CACHE_DIR"] = old


def _timed(fn: Callable[..., object], *args, **kwargs) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def run_control(rounds: int = 3, *, scales: tuple[int, ...] = SCALES, out=sys.stdout,
                json_output: bool = False) -> list[ControlResult]:
    results: dict[str, ControlResult] = {}

    def note(case: str, seconds: float) -> None:
        results.setdefault(case, ControlResult(case)).samples.append(seconds)

    run_id = new_run_id()
    topo = Topology.from_text(TOPOLOGY, run_id)
    root = f"{bpffs.DEFAULT_ROOT}/nfpctl-{run_id}"
    tmp = Path(tempfile.mkdtemp(prefix="nfpctl-"))
    try:
        with topo:
            target = [D.Target(topo.ifname("dut", "eth0"), topo.netns("dut"))]
            edge1, edge2 = _edge(tmp, 1), _edge(tmp, 2)
            fw_file = tmp / "filter.yaml"
            fw_file.write_text(FILTER_PIPELINE)
            for rnd in range(rounds):
                cold = tmp / f"cache-{rnd}"
                with _cache(cold):
                    note("deploy-cold", _timed(D.deploy, edge1, targets=target, root=root))
                    D.destroy("edge", root=root)
                    note("deploy-warm", _timed(D.deploy, edge1, targets=target, root=root))
                    rules = [{"action": "drop", "proto": "tcp", "dport": 23},
                             {"action": "port:1", "proto": "icmp"},
                             {"action": "drop", "proto": "udp", "dport": 1900 + rnd}]
                    note("update-runtime", _timed(D.set_filter_rules, "edge", "fw",
                                                   {"rules": rules}, root=root))
                    note("update-swap", _timed(D.deploy, edge2, targets=target, root=root))
                    note("destroy", _timed(D.destroy, "edge", root=root))
                    for n in scales:
                        rules = _drop_only(benchmark_rules(n))
                        changed = rules[:-1] + [dict(rules[-1], dport=f"8000-{8081 + rnd}")]
                        note(f"filter-{n}-build", _timed(_build, rules))
                        D.deploy(fw_file, targets=target, root=root)
                        D.set_filter_rules("nfpctl-filter", "fw", {"rules": rules}, root=root)
                        note(f"filter-{n}-update", _timed(D.set_filter_rules, "nfpctl-filter",
                                                          "fw", {"rules": changed}, root=root))
                        D.destroy("nfpctl-filter", root=root)
                shutil.rmtree(cold, ignore_errors=True)
    finally:
        for name in ("edge", "nfpctl-filter"):
            with contextlib.suppress(Exception):
                D.destroy(name, root=root)
        with contextlib.suppress(OSError):
            os.rmdir(root)
        shutil.rmtree(tmp, ignore_errors=True)
    final = list(results.values())
    for r in final:
        r.seconds = statistics.median(r.samples)
    if not json_output:
        print(f"control path, wall seconds in-process (median of {rounds} rounds)", file=out)
        for r in final:
            print(f"  {r.case:<22}{r.seconds * 1000:10.0f} ms", file=out)
    return final


def as_json(results: list[ControlResult]) -> dict:
    return {"control": [{"case": r.case, "seconds": r.seconds, "samples": r.samples}
                        for r in results]}
