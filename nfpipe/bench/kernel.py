"""``nfpipe bench``: nanoseconds per packet in the kernel, as ratios within one run.

Every case loads its programs, then runs one packet through BPF_PROG_TEST_RUN
with a large repeat count (the kernel times the loop); each case is measured
``rounds`` times and the median kept.  Times vary between machines and runs;
what is comparable is the ratio to the baseline (an XDP program that only
passes) measured in the same run, and the ratios between cases.

The ``fw-`` cases put the seeds' firewall (examples/firewall.yaml's filter node as
a one-node pipeline) beside the same firewall written by hand as one XDP program
(benchmarks/handwritten/firewall.c, shipped with nfpipe), for several packet
kinds; ``compare()`` gives each linking's cost over the hand-written program (the
filter's default classifier: its deployed rules built into the program as
straight-line checks), and that of ``linear``: fused, the rules scanned from its
``lin`` map (``classifier: linear``; what an ``auto`` node runs after a runtime
change of its rules, until the next deploy builds them in).

The ``edge-`` cases do the same for examples/edge.yaml (filter, LB, TTL guard, NAT,
telemetry) beside benchmarks/handwritten/edge.c; ``compare_edge()`` gives the ratio
issue 12 sets a target for: (nfpipe - floor) / (hand-written - floor).  A packet the
pipeline rewrites (DNAT, masquerade) would take another path on a second in-kernel
repeat, so those kinds are timed as the mean of single runs, with the floor timed the
same way (``baseline-single``); after the first run the flow is established.
"""
from __future__ import annotations

import statistics
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from nfpipe import resources
from nfpipe.catalog.base import SourceNF
from nfpipe.compose import build, make_plan
from nfpipe.kernel import syscall as sc
from nfpipe.loader import Object
from nfpipe.runtime import Pipeline
from nfpipe.spec import PipelineSpec
from nfpipe.testing import load_nf
from nfpipe.toolchain import compile as nf_compile

EXAMPLES = resources.bpf_dir() / "examples"
HANDWRITTEN = resources.data_dir("benchmarks") / "handwritten"
TCP_SYN = bytes(Ether() / IP(src="192.0.2.10", dst="198.51.100.20", ttl=64) /
                TCP(sport=40000, dport=8080, flags="S"))
UDP_DNS = bytes(Ether() / IP(src="192.0.2.10", dst="198.51.100.20") / UDP(sport=5353, dport=53))


SINGLES_MAX = 5000   # single runs per round of a case timed that way


@dataclass
class Result:
    name: str
    ns: float
    samples: list[int]
    note: str = ""          # what the case holds, as the kernel reports it (map memory)


# name -> (group, a factory of a context manager yielding: repeat -> ns per run)
CASES: dict[str, tuple[str, Callable]] = {}


def case(name: str, group: str):
    def register(fn):
        CASES[name] = (group, fn)
        return fn
    return register


@contextmanager
def _program(path: Path, program: str, packet: bytes, constants=None) -> Iterator[Callable]:
    with Object.load(nf_compile(path), constants=constants) as obj:
        prog = obj.programs[program]
        yield lambda repeat: prog.test_run(packet, repeat=repeat).duration_ns


@contextmanager
def _pipeline(text: str, linking: str, packet: bytes) -> Iterator[Callable]:
    spec = PipelineSpec.from_text(text, "<bench>")
    with Pipeline.load(build(make_plan(spec, linking=linking))) as p:
        yield lambda repeat: p.test_run(packet, repeat=repeat).duration_ns


def _timer(prog, packet: bytes, repeat_safe: bool = True) -> Callable:
    """repeat -> ns per run of *prog* on *packet*: in-kernel repeats, or (not
    *repeat_safe*) the mean of up to SINGLES_MAX single runs."""
    if repeat_safe:
        return lambda repeat: prog.test_run(packet, repeat=repeat).duration_ns

    def singles(repeat: int) -> float:
        n = max(1, min(repeat, SINGLES_MAX))
        return sum(prog.test_run(packet).duration_ns for _ in range(n)) / n
    return singles


@contextmanager
def _nf(nf, packet: bytes, hook: str = "xdp", repeat_safe: bool = True) -> Iterator[Callable]:
    """One NF alone.  A case whose NF rewrites the packet so that a second in-kernel
    repeat would take another path (NAT) is timed as the mean of single runs."""
    with load_nf(nf, hook) as loaded:
        timed = _timer(loaded.program, packet, repeat_safe)
        note = getattr(nf, "bench_note", None)
        timed.note = note(loaded.maps) if note else ""          # type: ignore[attr-defined]
        yield timed


@case("baseline", "baseline")
def _baseline():
    return _program(EXAMPLES / "xdp_pass.c", "xdp_pass", TCP_SYN)


@case("baseline-single", "baseline")
def _baseline_single():
    """The floor of the cases timed as single runs (the same per-call overhead)."""
    return _single_program(EXAMPLES / "xdp_pass.c", "xdp_pass", TCP_SYN)


@contextmanager
def _single_program(path: Path, program: str, packet: bytes) -> Iterator[Callable]:
    with Object.load(nf_compile(path)) as obj:
        yield _timer(obj.programs[program], packet, repeat_safe=False)


@case("ttl_guard", "nf")
def _ttl_guard():
    return _nf(SourceNF(EXAMPLES / "ttl_guard.c", {"min_ttl": 1}), TCP_SYN)


def _chain(n: int) -> str:
    nodes = "\n".join(f"  - {{id: g{i}, nf: {EXAMPLES}/ttl_guard.c}}" for i in range(n))
    edges = "\n".join(f"  - g{i}.out -> g{i + 1}" for i in range(n - 1))
    return f"pipeline: chain\nhook: xdp\nnodes:\n{nodes}\nedges:\n{edges}\n  - g{n - 1} -> pass\n"


@contextmanager
def _handwritten_chain(n: int) -> Iterator[Callable]:
    """benchmarks/handwritten/chain.c: hop0 .. hop{n-1} linked by bare tail calls."""
    with Object.load(nf_compile(HANDWRITTEN / "chain.c")) as obj:
        for i in range(1, n):
            obj.maps["hops"][i] = obj.programs[f"hop{i}"]
        yield _timer(obj.programs["hop0"], TCP_SYN)


CHAIN_LENGTHS = (1, 4, 8)
CHAIN_IMPLS = ("tailcall", "fused", "handwritten")

for _n in CHAIN_LENGTHS:
    for _linking in ("tailcall", "fused"):
        def _make(n=_n, linking=_linking):
            return _pipeline(_chain(n), linking, TCP_SYN)
        case(f"chain{_n}-{_linking}", "linking")(_make)
    case(f"chain{_n}-handwritten", "linking")(lambda n=_n: _handwritten_chain(n))


def compare_hops(results: list[Result]) -> list[dict]:
    """Per chain length measured beside chain1: the cost of one tail-call hop in
    nfpipe, over its fused form ((tailcall_N - fused_N) / (N - 1), the issue's target:
    at most 4 ns), and the kernel's own, from the bare programs of chain.c
    ((handwritten_N - handwritten_1) / (N - 1))."""
    ns = {r.name: r.ns for r in results}
    bare1 = ns.get("chain1-handwritten")
    rows = []
    for n in CHAIN_LENGTHS[1:]:
        got = {impl: ns.get(f"chain{n}-{impl}") for impl in CHAIN_IMPLS}
        hops = {}
        if got["tailcall"] is not None and got["fused"] is not None:
            hops["hop_over_fused_ns"] = (got["tailcall"] - got["fused"]) / (n - 1)
        if got["handwritten"] is not None and bare1 is not None:
            hops["kernel_hop_ns"] = (got["handwritten"] - bare1) / (n - 1)
        if hops:
            rows.append({"nodes": n, **{f"{k}_ns": v for k, v in got.items() if v is not None},
                         **hops})
    return rows


def firewall_config() -> dict:
    """The seeds' firewall: the config of examples/firewall.yaml's filter node."""
    doc = yaml.safe_load((resources.examples_dir() / "firewall.yaml").read_text())
    return next(n["config"] for n in doc["nodes"] if n["nf"] == "filter")


def firewall_pipeline(hook: str = "xdp", classifier: str | None = None) -> str:
    """The seeds' firewall as a one-node pipeline (the example's telemetry node left out:
    the hand-written program it is measured against counts nothing); *classifier*
    overrides the filter's."""
    config = firewall_config()
    if classifier is not None:
        config["classifier"] = classifier
    return yaml.safe_dump({"pipeline": "fw", "hook": hook,
                           "nodes": [{"id": "fw", "nf": "filter", "config": config}],
                           "edges": ["fw.out -> pass"]}, sort_keys=False)


# The seeds' firewall, by packet kind: nfpipe (both linkings) against the hand-written
# program.
_E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
_V4 = IP(src="192.0.2.10", dst="198.51.100.20")
_V6 = IPv6(src="2001:db8::10", dst="2001:db8::20")
FW_PACKETS = {
    "udp": bytes(_E / _V4 / UDP(sport=5353, dport=53)),            # dropped
    "tcp80": bytes(_E / _V4 / TCP(sport=40000, dport=80, flags="S")),   # dropped
    "tcp22": bytes(_E / _V4 / TCP(sport=40000, dport=22, flags="S")),   # passed
    "v6tcp22": bytes(_E / _V6 / TCP(sport=40000, dport=22, flags="S")),  # passed
    "vlan-tcp22": bytes(_E / Dot1Q(vlan=7) / _V4 / TCP(sport=40000, dport=22)),
}
FW_IMPLS = ("handwritten", "fused", "tailcall", "linear")
FW_NFPIPE = FW_IMPLS[1:]

for _kind, _pkt in FW_PACKETS.items():
    case(f"fw-{_kind}-handwritten", "firewall")(
        lambda pkt=_pkt: _program(HANDWRITTEN / "firewall.c", "firewall", pkt))
    for _linking in ("fused", "tailcall"):
        case(f"fw-{_kind}-{_linking}", "firewall")(
            lambda pkt=_pkt, linking=_linking: _pipeline(firewall_pipeline(), linking, pkt))
    case(f"fw-{_kind}-linear", "firewall")(
        lambda pkt=_pkt: _pipeline(firewall_pipeline(classifier="linear"), "fused", pkt))


def compare(results: list[Result]) -> list[dict]:
    """Per firewall packet kind measured: ns/packet of each implementation, and nfpipe's
    over the hand-written program (both include the floor, so it cancels)."""
    ns = {r.name: r.ns for r in results}
    rows = []
    for kind in FW_PACKETS:
        got = {impl: ns.get(f"fw-{kind}-{impl}") for impl in FW_IMPLS}
        if got["handwritten"] is None:
            continue
        row = {"packet": kind, **{f"{k}_ns": v for k, v in got.items()}}
        for linking in FW_NFPIPE:
            if got[linking] is not None:
                row[f"{linking}_over_handwritten_ns"] = got[linking] - got["handwritten"]
        rows.append(row)
    return rows


# examples/edge.yaml beside benchmarks/handwritten/edge.c.

def edge_yaml() -> Path:
    return resources.examples_dir() / "edge.yaml"


def edge_lb_plan() -> tuple[list[int], dict[int, tuple[bytes, int, bool]]]:
    """What the hand-written edge program takes from nfpipe's LB control plane, and the
    one place it does: edge.yaml's lb config through ``LoadBalancer``, and from its
    plan the VIP's Maglev table (slot -> backend id) and the backends (id -> IPv4
    address bytes, port, draining)."""
    from nfpipe.catalog.lb import LoadBalancer
    doc = yaml.safe_load(edge_yaml().read_text())
    plan = LoadBalancer(next(n["config"] for n in doc["nodes"] if n["nf"] == "lb")).plan
    (table,) = plan.tables.values()                     # edge.yaml has one VIP
    return list(table), {bid: (b.addr, b.port, b.draining)
                         for bid, (_, b) in plan.backends.items()}


@contextmanager
def edge_handwritten(obj_path: str | Path | None = None) -> Iterator[Object]:
    """benchmarks/handwritten/edge.c (or the object *obj_path*) loaded, its LB maps
    filled from ``edge_lb_plan()``; every other map starts empty."""
    table, backends = edge_lb_plan()
    with Object.load(obj_path or nf_compile(HANDWRITTEN / "edge.c")) as obj:
        slots = obj.maps["lb_table"]
        n = len(table)
        if n != slots.max_entries:
            raise RuntimeError(f"edge.c's lb_table has {slots.max_entries} slots, the LB's "
                               f"table {n}: change LB_TABLE_SIZE with edge.yaml")
        sc.map_update_batch_packed(slots.fd, struct.pack(f"<{n}I", *range(n)),
                                   struct.pack(f"<{n}I", *table), n)
        for bid, (addr, port, draining) in backends.items():
            obj.maps["lb_backends"][bid] = {
                "addr": int.from_bytes(addr, "little"),         # __be32 / __be16 as
                "port": int.from_bytes(port.to_bytes(2, "big"), "little"),  # on the wire
                "flags": 1 | (2 if draining else 0), "pad": 0}
        yield obj


def edge_pipeline(linking: str) -> Pipeline:
    """examples/edge.yaml loaded with *linking* (the caller closes it)."""
    return Pipeline.load(build(make_plan(PipelineSpec.from_file(edge_yaml()),
                                         linking=linking)))


_CLIENT = IP(src="198.51.100.20", dst="203.0.113.80", ttl=64)
# kind -> (packet, timed by in-kernel repeats): VIP traffic and the masquerade are
# rewritten (single runs), the others leave the packet as it was.
EDGE_PACKETS: dict[str, tuple[bytes, bool]] = {
    "vip-syn": (bytes(_E / _CLIENT / TCP(sport=40000, dport=80, flags="S")), False),
    "vip-est": (bytes(_E / _CLIENT / TCP(sport=40000, dport=80, flags="A") / (b"x" * 64)),
                False),
    "masq": (bytes(_E / IP(src="10.0.0.5", dst="93.184.216.34") /
                   TCP(sport=51000, dport=443, flags="A") / (b"x" * 64)), False),
    "icmp": (bytes(_E / IP(src="198.51.100.20", dst="203.0.113.1", ttl=64) /
                   ICMP(id=7)), True),                   # TTL guard passes, NAT leaves it
    "icmp-ttl1": (bytes(_E / IP(src="198.51.100.20", dst="203.0.113.1", ttl=1) /
                        ICMP(id=7)), True),              # the TTL guard drops it
    "telnet": (bytes(_E / IP(src="198.51.100.20", dst="10.0.1.1") /
                     TCP(sport=40000, dport=23, flags="S")), True),
    # through all four NFs, changed by none: the filter's default, the LB's reply lookup
    # (a miss), the NAT's untouched path, telemetry's established flow
    "pass": (bytes(_E / IP(src="198.51.100.20", dst="192.0.2.1") /
                   TCP(sport=40000, dport=443, flags="A") / (b"x" * 64)), True),
}
EDGE_IMPLS = ("handwritten", "fused", "tailcall")
EDGE_FUSED_STYLE: dict[str, str] = {}   # case -> "inline" or "calls", once loaded


@contextmanager
def _edge_hw(packet: bytes, repeat_safe: bool) -> Iterator[Callable]:
    with edge_handwritten() as obj:
        yield _timer(obj.programs["edge"], packet, repeat_safe)


@contextmanager
def _edge_nfpipe(name: str, linking: str, packet: bytes, repeat_safe: bool
                 ) -> Iterator[Callable]:
    with edge_pipeline(linking) as p:
        if p.fused_style:
            EDGE_FUSED_STYLE[name] = p.fused_style
        yield _timer(p.entry, packet, repeat_safe)


for _kind, (_pkt, _safe) in EDGE_PACKETS.items():
    case(f"edge-{_kind}-handwritten", "edge")(
        lambda pkt=_pkt, safe=_safe: _edge_hw(pkt, safe))
    for _linking in ("fused", "tailcall"):
        _name = f"edge-{_kind}-{_linking}"
        case(_name, "edge")(lambda name=_name, pkt=_pkt, linking=_linking, safe=_safe:
                            _edge_nfpipe(name, linking, pkt, safe))


def compare_edge(results: list[Result]) -> list[dict]:
    """Per edge packet kind measured: ns/packet of each implementation and of the floor
    timed the same way, and the issue's ratio (nfpipe - floor) / (hand-written - floor)
    for each linking (target: fused at most 1.2)."""
    ns = {r.name: r.ns for r in results}
    rows = []
    for kind, (_, safe) in EDGE_PACKETS.items():
        got = {impl: ns.get(f"edge-{kind}-{impl}") for impl in EDGE_IMPLS}
        floor = ns.get("baseline" if safe else "baseline-single")
        if got["handwritten"] is None or floor is None:
            continue
        row = {"packet": kind, "timing": "repeat" if safe else "single runs",
               "floor_ns": floor, **{f"{k}_ns": v for k, v in got.items()}}
        for linking in ("fused", "tailcall"):
            if got[linking] is not None:                # None: no cost above the floor
                row[f"{linking}_ratio"] = ((got[linking] - floor) /
                                           (got["handwritten"] - floor)
                                           if got["handwritten"] > floor else None)
        style = EDGE_FUSED_STYLE.get(f"edge-{kind}-fused")
        if style:
            row["fused_style"] = style
        rows.append(row)
    return rows


def register_catalog_cases() -> None:
    """Cases for catalog NFs whose modules provide ``bench_cases()``."""
    import importlib
    for module in ("filter", "nat", "lb", "telemetry"):
        try:
            mod = importlib.import_module(f"nfpipe.catalog.{module}")
        except ImportError:
            continue
        for name, (nf_factory, packet, safe) in getattr(mod, "bench_cases", dict)().items():
            def _make(nf_factory=nf_factory, packet=packet, safe=safe):
                return _nf(nf_factory(), packet, repeat_safe=safe)
            case(name, "catalog")(_make)


def run(selected: list[str] | None = None, *, repeat: int = 200_000, rounds: int = 5,
        loads: int = 3, out=sys.stdout, json_output: bool = False) -> list[Result]:
    """Each case's median over *loads* loads of every case, *rounds* measurements each.

    A program's cost moves by up to 15 ns from one load of it to the next (the same
    object: where the JIT puts its image, and so its branches and cache lines, is the
    difference), and stays there for as long as it is loaded; so every case is loaded
    again *loads* times and the median is taken over all its samples."""
    if not any(group == "catalog" for group, _ in CASES.values()):
        register_catalog_cases()
    names = [n for n in CASES if not selected or n == "baseline" or
             any(n.startswith(s) for s in selected)]
    if any(n.startswith("edge-") and not EDGE_PACKETS[n[5:n.rindex("-")]][1] for n in names) \
            and "baseline-single" not in names:
        names.insert(1, "baseline-single")             # the floor of single-run cases
    samples: dict[str, list] = {n: [] for n in names}
    notes: dict[str, str] = {}
    for _load in range(max(1, loads)):
        with ExitStack() as stack:
            # Every case loaded first, then measured round-robin: a drift of the machine
            # (frequency, a neighbour's load) spreads over all cases instead of skewing
            # whichever ran during it.
            runners = {n: stack.enter_context(CASES[n][1]()) for n in names}
            for runner in runners.values():
                runner(1000)                                # warm up
            for _ in range(rounds):
                for n in names:
                    samples[n].append(runners[n](repeat))
            notes = {n: getattr(r, "note", "") for n, r in runners.items()}
    results = [Result(n, statistics.median(samples[n]), samples[n], notes[n]) for n in names]
    if not json_output:
        base = results[0].ns
        for r in results:
            print(f"  {r.name:<28} {r.ns:>8.1f} ns/pkt   x{r.ns / base:>5.2f} of baseline",
                  file=out, flush=True)
    for r in results:
        if r.note and not json_output:
            print(f"  {r.name}: {r.note}", file=out)
    rows = compare(results)
    if rows and not json_output:
        print("\nthe seeds' firewall over the hand-written program (ns/packet, same run):",
              file=out)
        for row in rows:
            over = "   ".join(f"{k.split('_')[0]} {v:+6.1f}" for k, v in row.items()
                             if k.endswith("_over_handwritten_ns"))
            print(f"  {row['packet']:<12} hand-written {row['handwritten_ns']:6.1f}   {over}",
                  file=out)
    hops = compare_hops(results)
    if hops and not json_output:
        print("\none tail-call hop (ns; nfpipe: tail calls over fused, per hop, target <= 4; "
              "the kernel: chain.c's bare tail calls, per hop):", file=out)
        for row in hops:
            parts = [f"{label} {row[key]:5.1f}" for key, label in
                     (("hop_over_fused_ns", "nfpipe"), ("kernel_hop_ns", "kernel"))
                     if key in row]
            print(f"  chain{row['nodes']:<3} " + "   ".join(parts), file=out)
    edge = compare_edge(results)
    if edge and not json_output:
        print("\nexamples/edge.yaml over benchmarks/handwritten/edge.c, floor subtracted "
              "((nfpipe - floor) / (hand-written - floor); target: fused <= 1.2):", file=out)
        for row in edge:
            ratios = "   ".join(f"{k.split('_')[0]} " + (f"x{v:.2f}" if v is not None else "-")
                                for k, v in row.items() if k.endswith("_ratio"))
            style = f"  (fused: {row['fused_style']})" if "fused_style" in row else ""
            print(f"  {row['packet']:<10} floor {row['floor_ns']:6.1f}  hand-written "
                  f"{row['handwritten_ns']:6.1f}   {ratios}   [{row['timing']}]{style}",
                  file=out)
    return results
