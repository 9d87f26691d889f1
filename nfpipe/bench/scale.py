"""``nfpipe bench --scale``: the filter at 10, 1k and 10k rules on live frames, beside
nftables written rule for rule and nftables with sets.

The device under test and the measure are ``nfpipe bench --live``'s (``live.Bench``:
a veth between two namespaces, live frames from BPF_PROG_TEST_RUN (or a packet
socket where the kernel refuses them), the DUT's NAPI
thread's CPU time per frame received).  The rule sets are ``benchmark_rules(n)``'s
shapes — the seeds, IPv4 /24 sources with a TCP port each, IPv6 /48 pairs with port
ranges — every rule dropping, and last one that the frame matches (a TCP SYN from
the generator to port 8080): the worst case for anything that walks the rules in
order.  Each rule set runs three ways:

* ``nfpipe``: the filter node at XDP native (fused);
* ``nftables-rules``: a netdev ingress chain with one nft rule per filter rule;
* ``nftables-sets``: the same rules as nft would be written by someone who knows it:
  the per-source rules in two concatenated interval sets (``ip saddr . tcp dport``,
  ``ip6 saddr . th dport``), so the chain is five rules at every scale.

The targets (issue 12): nfpipe within 1.2x of itself from 10 to 10,000 rules, and at
least 2x nftables with sets at 10,000.
"""
from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import yaml
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from nfpipe.bench.live import TOPOLOGY, Bench, finish
from nfpipe.topo import Topology, new_run_id

SCALES = {"10": 10, "1k": 1000, "10k": 10_000}
WAYS = ("nfpipe", "nftables-rules", "nftables-sets")
LAST = {"action": "drop", "src": "10.99.0.1/32", "dst": "10.99.0.2/32", "proto": "tcp",
        "dport": "8000-8080"}


@dataclass
class ScaleResult:
    way: str
    rules: int
    ns_per_packet: float | None = None
    received: int = 0
    samples: list = field(default_factory=list)
    skipped: str = ""
    generator: str = ""                  # what sent the frames (live.Bench.generator)


def scale_rules(n: int) -> list[dict]:
    """*n* filter rules, all dropping, the frame matching the last (see the module)."""
    rules = [{"action": "drop", "proto": "udp", "dport": 53},
             {"action": "drop", "proto": "tcp", "dport": [80, 443]}]
    for i in range(2, n - 1):
        if i % 4:
            rules.append({"action": "drop", "src": f"10.{i >> 8 & 255}.{i & 255}.0/24",
                          "proto": "tcp", "dport": 1000 + i % 100})
        else:
            rules.append({"action": "drop", "src": f"2001:db8:{i:x}::/48",
                          "dst": "2001:db8:ffff::/48", "sport": "1024-65535",
                          "dport": 2000 + i % 10})
    return rules + [dict(LAST)]


def _nft_match(r: dict) -> str:
    """One filter rule of ``scale_rules`` as an nft match."""
    parts = []
    v6 = ":" in r.get("src", "")
    if "src" in r:
        parts.append(f"{'ip6' if v6 else 'ip'} saddr {r['src']}")
    if "dst" in r:
        parts.append(f"{'ip6' if v6 else 'ip'} daddr {r['dst']}")
    proto = r.get("proto")
    ports = "th" if proto is None else proto
    if proto is None and ("sport" in r or "dport" in r):
        parts.append("meta l4proto { tcp, udp }")
    for key in ("sport", "dport"):
        if key in r:
            v = r[key]
            v = "{ " + ", ".join(map(str, v)) + " }" if isinstance(v, list) else str(v)
            parts.append(f"{ports} {key} {v}")
    if proto is not None and not any(k in r for k in ("sport", "dport")):
        parts.append(f"meta l4proto {proto}")
    return " ".join(parts)


def nft_rules(rules: list[dict], ifname: str) -> str:
    body = "\n".join(f"        {_nft_match(r)} drop" for r in rules)
    return (f"table netdev nfpscale {{\n    chain ingress {{\n        type filter hook ingress "
            f"device \"{ifname}\" priority 0; policy accept;\n{body}\n    }}\n}}\n")


def nft_sets(rules: list[dict], ifname: str) -> str:
    v4 = [f"{r['src']} . {r['dport']}" for r in rules[2:-1] if ":" not in r["src"]]
    v6 = [f"{r['src']} . {r['dport']}" for r in rules[2:-1] if ":" in r["src"]]
    sets, chain = [], [f"        {_nft_match(r)} drop" for r in rules[:2]]
    if v4:
        sets.append("    set v4 { type ipv4_addr . inet_service; flags interval; "
                    f"elements = {{ {', '.join(v4)} }} }}")
        chain.append("        ip saddr . tcp dport @v4 drop")
    if v6:
        sets.append("    set v6 { type ipv6_addr . inet_service; flags interval; "
                    f"elements = {{ {', '.join(v6)} }} }}")
        chain.append("        meta l4proto { tcp, udp } ip6 daddr 2001:db8:ffff::/48 "
                     "th sport 1024-65535 ip6 saddr . th dport @v6 drop")
    chain.append(f"        {_nft_match(rules[-1])} drop")
    return ("table netdev nfpscale {\n" + "\n".join(sets) + "\n    chain ingress {\n"
            f"        type filter hook ingress device \"{ifname}\" priority 0; "
            "policy accept;\n" + "\n".join(chain) + "\n    }\n}\n")


def _nfpipe(b: Bench, rules: list[dict]) -> contextlib.AbstractContextManager:
    text = yaml.safe_dump({"pipeline": "nfpscale", "hook": "xdp",
                           "nodes": [{"id": "fw", "nf": "filter",
                                      "config": {"default": "allow", "rules": rules}}],
                           "edges": ["fw.out -> pass"]}, sort_keys=False)
    return b.nfpipe("native", "fused", text)


@contextlib.contextmanager
def _nft(b: Bench, ruleset: str) -> Iterator[None]:
    b._tool(["nft", "-f", "-"], ruleset)
    try:
        yield
    finally:
        b._tool(["nft", "delete", "table", "netdev", "nfpscale"])


def ways(b: Bench, rules: list[dict]) -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    return {"nfpipe": lambda: _nfpipe(b, rules),
            "nftables-rules": lambda: _nft(b, nft_rules(rules, b.ifname)),
            "nftables-sets": lambda: _nft(b, nft_sets(rules, b.ifname))}


def run_scale(selected: list[str] | None = None, *, frames: int = 1_000_000,
              rounds: int = 3, out=sys.stdout, json_output: bool = False) -> list[ScaleResult]:
    """Every way at every scale (*selected*: way or scale names to keep), round-robin."""
    chosen = [(w, label) for label in SCALES for w in WAYS
              if not selected or w in selected or label in selected]
    results = {(w, label): ScaleResult(w, SCALES[label]) for w, label in chosen}
    if shutil.which("nft") is None:
        for (w, _label), r in results.items():
            if w.startswith("nftables"):
                r.skipped = "nft is not installed (apt-get install nftables)"
    topo = Topology.from_text(TOPOLOGY, new_run_id())
    with topo:
        b = Bench(topo)
        frame = bytes(Ether(src="02:00:00:00:00:01", dst=b.dut_mac) /
                      IP(src="10.99.0.1", dst="10.99.0.2") /
                      TCP(sport=40000, dport=8080, flags="S"))
        sets = {label: scale_rules(n) for label, n in SCALES.items()}
        if not json_output:
            print(f"live frames at 10 / 1k / 10k rules, DUT CPU ns per frame received "
                  f"(median of {rounds} rounds of {frames} frames; the frame matches the "
                  f"last rule); generator: {b.generator}", file=out)
        for r in results.values():
            r.generator = b.generator
        for _ in range(rounds):
            for (w, label), r in results.items():
                if r.skipped:
                    continue
                try:
                    with ways(b, sets[label])[w]():
                        ns, got = b.measure(frame, frames)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    r.skipped = str(exc).splitlines()[0][:200]
                    continue
                r.received += got
                if ns is not None:
                    r.samples.append(ns)
    return finish(list(results.values()), report, out, json_output)


def ratios(results: list[ScaleResult]) -> dict[str, dict[str, float]]:
    """The two targets' ratios: nfpipe at n rules over nfpipe at 10 (``flatness``), and
    each nftables way over nfpipe at the same n (> 1: nfpipe is faster)."""
    ns = {(r.way, r.rules): r.ns_per_packet for r in results if r.ns_per_packet}
    out: dict[str, dict[str, float]] = {}
    base = ns.get(("nfpipe", 10))
    for (way, n), v in ns.items():
        mine = ns.get(("nfpipe", n))
        if way == "nfpipe" and base:
            out.setdefault("nfpipe_over_10_rules", {})[str(n)] = v / base
        elif mine:
            out.setdefault(f"{way}_over_nfpipe", {})[str(n)] = v / mine
    return out


def report(results: list[ScaleResult], out) -> None:
    by = {(r.way, r.rules): r for r in results}
    ns_of = ratios(results)
    print(f"  {'way':<18}" + "".join(f"{label + ' rules':>14}" for label in SCALES), file=out)
    for w in WAYS:
        cells = []
        for n in SCALES.values():
            r = by.get((w, n))
            if r is None:
                cells.append(f"{'':>14}")
            elif r.skipped:
                cells.append(f"{'skipped':>14}")
            elif r.ns_per_packet is None:
                cells.append(f"{'-':>14}")
            else:
                x = ns_of.get(f"{w}_over_nfpipe", {}).get(str(n))
                cells.append(f"{r.ns_per_packet:8.0f}" + (f" {x:4.1f}x" if x else " " * 6))
        print(f"  {w:<18}" + "".join(cells), file=out)
    for r in results:
        if r.skipped:
            print(f"  {r.way} at {r.rules} rules skipped: {r.skipped}", file=out)
            break
    flat = ns_of.get("nfpipe_over_10_rules")
    if flat:
        print("  nfpipe at n rules over nfpipe at 10: " +
              ", ".join(f"{n}: {x:.2f}x" for n, x in flat.items()), file=out)


def as_json(results: list[ScaleResult]) -> dict:
    return {"scale": [asdict(r) for r in results], "scale_ratios": ratios(results)}
