"""A pipeline of catalog NFs and user C NFs, in both linkings and both hooks, checked
packet by packet against the composition of the NFs' reference models; every edge
taken, no tail call missed."""
from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from nfpipe.catalog import parse as P
from nfpipe.catalog.csum import checksum
from nfpipe.catalog.filter import FilterModel
from nfpipe.catalog.lb import LBModel
from nfpipe.catalog.nat import NatModel
from nfpipe.catalog.telemetry import TelemetryModel
from nfpipe.compose import build, make_plan
from nfpipe.nfabi import TC_CODES, XDP_CODES, Verdict
from nfpipe.runtime.pipeline import Pipeline
from nfpipe.spec import PipelineSpec

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent.parent
PIPELINE = f"""
pipeline: catalog
hook: HOOK
nodes:
  - id: fw
    nf: filter
    config:
      default: allow
      rules:
        - {{action: drop, proto: tcp, dport: 23}}
        - {{action: "port:1", proto: icmp}}
  - id: split
    nf: {ROOT}/bpf/examples/split_l4.c
    ports: [out, udp]
  - id: lb
    nf: lb
    config:
      vips:
        - vip: "10.100.0.1:80"
          proto: tcp
          table_size: 251
          backends:
            - {{addr: "10.0.1.1:8080", weight: 1}}
            - {{addr: "10.0.1.2:8080", weight: 2}}
  - id: guard
    nf: {ROOT}/bpf/examples/ttl_guard.c
    config: {{min_ttl: 3}}
  - id: nat
    nf: nat
    config:
      internal: [10.0.0.0/8]
      external_ip: 203.0.113.1
      port_range: 20000-20999
  - id: tlm
    nf: telemetry
edges:
  - fw.out -> split
  - fw.port1 -> guard
  - split.out -> lb
  - split.udp -> guard
  - lb.out -> nat
  - guard.out -> nat
  - nat.out -> tlm
  - tlm.out -> pass
"""


def split_model(data: bytes):
    p = P.parse_packet(data)
    if p.malformed:
        return Verdict.DROP, data
    return (1 if p.l4_proto == 17 else 0), data


def guard_model(min_ttl: int):
    def run(data: bytes):
        p = P.parse_packet(data)
        if p.malformed:
            return Verdict.DROP, data
        if not (p.is_ipv4 or p.is_ipv6) or p.ttl > min_ttl:
            return 0, data
        return Verdict.DROP, data
    return run


class Composed:
    """The pipeline as its reference models, following the plan's port targets."""

    def __init__(self, plan):
        self.plan = plan
        nodes = plan.spec.nodes
        self.models = {
            "fw": FilterModel(nodes["fw"].impl).run,
            "split": split_model,
            "lb": LBModel(nodes["lb"].impl).process,
            "guard": guard_model(3),
            "nat": NatModel(nodes["nat"].impl).process,
            "tlm": TelemetryModel(nodes["tlm"].impl).process,
        }
        self.edges: dict[str, int] = {}

    def run(self, data: bytes) -> tuple[Verdict, bytes]:
        node = self.plan.order[0]
        by_id = self.plan.nodes
        while True:
            result, data = self.models[node.id](data)
            if result < 0:
                return Verdict(result), data
            target = node.targets[result]
            name = f"{node.id}.{target.port} -> {target.node or target.describe()}"
            self.edges[name] = self.edges.get(name, 0) + 1
            if target.node is None:
                return Verdict[target.verdict.upper()], data
            node = by_id[target.node]


def eth(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype) \
        + payload


def ipv4(src: str, dst: str, proto: int, l4: bytes, ttl: int = 64) -> bytes:
    import socket
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, ttl, proto, 0, s, d)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    pseudo = s + d + struct.pack("!BBH", 0, proto, len(l4))
    if proto in (6, 17):
        off = 16 if proto == 6 else 6
        l4 = l4[:off] + b"\0\0" + l4[off + 2:]
        c = checksum(pseudo + l4) or 0xFFFF
        l4 = l4[:off] + struct.pack("!H", c) + l4[off + 2:]
    elif proto == 1:
        l4 = l4[:2] + b"\0\0" + l4[4:]
        l4 = l4[:2] + struct.pack("!H", checksum(l4)) + l4[4:]
    return eth(hdr + l4)


def tcp(sport, dport, flags=0x10, payload=b""):
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 8192, 0, 0) + payload


def udp(sport, dport, payload=b"x" * 8):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo(ident, seq=1):
    return struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"ping"


def traffic(rng: random.Random, n: int):
    """A stateful mix: VIP flows and their backend replies, SNAT flows and their replies,
    UDP with low TTLs, ICMP, telnet (dropped), truncated packets, IPv6."""
    clients = [f"10.1.{i}.{j}" for i in range(3) for j in range(1, 6)]
    outside = [f"198.51.100.{i}" for i in range(1, 8)]
    for _ in range(n):
        kind = rng.random()
        c = rng.choice(clients)
        sport = rng.randrange(30000, 30040)
        if kind < 0.25:
            yield ipv4(c, "10.100.0.1", 6, tcp(sport, 80, rng.choice([0x02, 0x10, 0x18])))
        elif kind < 0.35:
            be = rng.choice(["10.0.1.1", "10.0.1.2"])
            yield ipv4(be, c, 6, tcp(8080, sport))
        elif kind < 0.55:
            yield ipv4(c, rng.choice(outside), 6, tcp(sport, rng.choice([443, 22, 23])))
        elif kind < 0.65:
            yield ipv4(rng.choice(outside), "203.0.113.1", 6,
                       tcp(rng.choice([443, 22]), rng.randrange(20000, 20010)))
        elif kind < 0.8:
            yield ipv4(c, rng.choice(outside), 17, udp(sport, 53), ttl=rng.choice([2, 3, 4, 64]))
        elif kind < 0.88:
            yield ipv4(c, rng.choice(outside), 1, icmp_echo(rng.randrange(1, 20)),
                       ttl=rng.choice([3, 64]))
        elif kind < 0.94:
            full = ipv4(c, rng.choice(outside), 6, tcp(sport, 443))
            yield full[:14 + 20 + rng.randrange(1, 19)]          # TCP header cut short
        else:
            v6 = struct.pack("!IHBB16s16s", 6 << 28, 8, 17, 64, b"\x20\x01\x0d\xb8" + bytes(11)
                             + b"\x01", b"\x20\x01\x0d\xb8" + bytes(11) + b"\x02")
            yield eth(v6 + udp(sport, 53, b""), 0x86DD)


@pytest.mark.parametrize("hook,linking", [("xdp", "tailcall"), ("xdp", "fused"),
                                          ("tc", "tailcall"), ("tc", "fused")])
def test_pipeline_matches_composed_models(hook, linking):
    text = PIPELINE.replace("HOOK", "xdp" if hook == "xdp" else "tc-ingress")
    spec = PipelineSpec.from_text(text, "catalog.yaml")
    plan = make_plan(spec, linking=linking)
    model = Composed(plan)
    codes = XDP_CODES if hook == "xdp" else TC_CODES
    rng = random.Random(4242)
    with Pipeline.load(build(plan)) as pipeline:
        for i, data in enumerate(traffic(rng, 2500)):
            verdict, out = model.run(data)
            res = pipeline.test_run(data)
            assert (res.retval, res.data) == (codes[verdict], out), (i, data.hex(), verdict)
        edges = pipeline.edge_counts()
        assert edges == model.edges
        assert all(count > 0 for count in edges.values()), edges     # every edge taken
        stats = pipeline.stats()
        assert all("tail_call_miss" not in row for row in stats.values())
        if linking == "fused":
            # inlined, six NFs exceed the verifier's budget with some compilers (the wheel's
            # clang; clang 19 fits them at tc): then each node gets a global function
            # (tests/pipeline/test_linking.py forces that), and either way every packet
            # above got the models' result
            assert pipeline.fused_style in ("inline", "calls")
