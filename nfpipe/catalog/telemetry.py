"""telemetry: per-flow counters, SYN counts per source, protocol and size histograms,
and sampled packet headers written out as pcap — without ever changing a packet.

Data plane: ``bpf/telemetry.c``.  Port ``out`` (0) is the only result, so a
telemetry node can sit anywhere in a pipeline.  Config (all optional)::

    flows: true              # per-flow packets/bytes/first/last seen (LRU hash)
    flow_table_size: 65536   # flows kept (LRU: the least recently seen go first)
    syn_sources: true        # TCP SYN-without-ACK count per source address
    syn_table_size: 65536
    histograms: true         # protocol-class and log2 packet-size histograms
    sample_rate: 0           # 0: off; N: every N-th packet (per CPU) into the ring buffer
    snaplen: 128             # bytes of a sampled packet kept (1..256)
    ringbuf_size: 262144     # ring buffer bytes: a power of two, a multiple of the page size

``Telemetry.flows(maps)`` and friends read the maps back; ``write_pcap(maps,
path)`` drains the sample ring buffer into a pcap file.  ``TelemetryModel`` is
the Python reference model of the data plane.  Per-node verdict counters come
from the pipeline itself (``nfp_stats``; ``nfpipe.runtime.node_stats`` reads them).
"""
from __future__ import annotations

import ipaddress
import mmap
import os
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, NamedTuple

from nfpipe.catalog import parse as P
from nfpipe.catalog.base import NetworkFunction, NodeMaps
from nfpipe.catalog.pcap import PcapWriter
from nfpipe.errors import SpecError
from nfpipe.loader.ringbuf import RingBuffer

# --- the data plane's layout (bpf/telemetry.c) --------------------------------------------

PROTO_CLASSES = ("other_l3", "ipv4_tcp", "ipv4_udp", "ipv4_icmp", "ipv4_other",
                 "ipv6_tcp", "ipv6_udp", "ipv6_icmp", "ipv6_other", "malformed")
# bucket b: 2**b <= len < 2**(b+1); bucket 0 holds 0..1, bucket 16 holds >= 64 KiB
SIZE_BUCKETS = 17
COUNTERS = ("packets", "malformed", "sampled", "ringbuf_full", "flow_fail", "syn_fail",
            "copy_fail")
MAX_SNAPLEN = 256                 # NFP_TLM_MAX_SNAPLEN
SAMPLE_HDR = struct.Struct("<QII")          # ts_ns, pkt_len, cap_len
SAMPLE_SIZE = SAMPLE_HDR.size + MAX_SNAPLEN  # struct nfp_tlm_sample: one ring buffer record
MAX_TABLE = 1 << 24

DEFAULTS: dict[str, Any] = {
    "flows": True, "flow_table_size": 65536, "syn_sources": True, "syn_table_size": 65536,
    "histograms": True, "sample_rate": 0, "snaplen": 128, "ringbuf_size": 262144,
}


def size_bucket(length: int) -> int:
    """The size histogram's bucket of a packet length: floor(log2(len)), capped at 16."""
    return min(max(length, 1).bit_length() - 1, SIZE_BUCKETS - 1)


def proto_class(p: P.Parsed) -> int:
    if p.malformed:
        return PROTO_CLASSES.index("malformed")
    fam = "ipv4" if p.is_ipv4 else "ipv6" if p.is_ipv6 else None
    if fam is None:
        return 0
    icmp = P.IPPROTO_ICMP if fam == "ipv4" else P.IPPROTO_ICMPV6
    kind = {P.IPPROTO_TCP: "tcp", P.IPPROTO_UDP: "udp", icmp: "icmp"}.get(p.l4_proto, "other")
    return PROTO_CLASSES.index(f"{fam}_{kind}")


class FlowKey(NamedTuple):
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    proto: int
    sport: int
    dport: int


@dataclass(frozen=True)
class Sample:
    ts_ns: int          # CLOCK_MONOTONIC (bpf_ktime_get_ns)
    pkt_len: int
    data: bytes         # the first min(pkt_len, snaplen) bytes


def _addr(words: list[int], family: int):
    raw = b"".join(int(w).to_bytes(4, "little") for w in words)
    return ipaddress.ip_address(raw[:4] if family == 4 else raw)


def _sum_percpu(values) -> Any:
    if isinstance(values, list):
        if values and isinstance(values[0], dict):
            return {k: sum(v[k] for v in values) for k in values[0]}
        return sum(values)
    return values


# --- config ---------------------------------------------------------------------------------

def _bool(cfg: Mapping, key: str) -> bool:
    v = cfg.get(key, DEFAULTS[key])
    if not isinstance(v, bool):
        raise SpecError(f"telemetry: '{key}' must be true or false, not {v!r}")
    return v


def _int(cfg: Mapping, key: str, lo: int, hi: int) -> int:
    v = cfg.get(key, DEFAULTS[key])
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"telemetry: '{key}' must be an integer ({lo}..{hi}), not {v!r}")
    if not lo <= v <= hi:
        raise SpecError(f"telemetry: '{key}' must be in {lo}..{hi}, not {v}")
    return v


class Telemetry(NetworkFunction):
    """Counters, histograms and packet samples; always port ``out``."""

    kind = "telemetry"
    source_name = "telemetry.c"
    ports = ("out",)
    config_keys = frozenset(DEFAULTS)
    map_keys = frozenset()              # config sets constants and map sizes only

    def __init__(self, config: Mapping[str, Any] | None = None):
        super().__init__(config)
        cfg = self.config
        self.flows_on = _bool(cfg, "flows")
        self.syn_on = _bool(cfg, "syn_sources")
        self.hist_on = _bool(cfg, "histograms")
        self.flow_table_size = _int(cfg, "flow_table_size", 1, MAX_TABLE)
        self.syn_table_size = _int(cfg, "syn_table_size", 1, MAX_TABLE)
        self.sample_rate = _int(cfg, "sample_rate", 0, 0xFFFFFFFF)
        self.snaplen = _int(cfg, "snaplen", 1, MAX_SNAPLEN)
        self.ringbuf_size = _int(cfg, "ringbuf_size", mmap.PAGESIZE, 1 << 30)
        rb = self.ringbuf_size
        if rb & (rb - 1) or rb % mmap.PAGESIZE:
            raise SpecError(f"telemetry: 'ringbuf_size' must be a power of two and a multiple "
                            f"of the page size ({mmap.PAGESIZE}), not {rb}")

    def constants(self) -> dict[str, Any]:
        return {"flows_on": int(self.flows_on), "syn_on": int(self.syn_on),
                "hist_on": int(self.hist_on), "sample_rate": self.sample_rate,
                "snaplen": self.snaplen}

    def map_sizes(self) -> dict[str, int]:
        """max_entries of the maps the config sizes (unprefixed names), set before load."""
        return {"flows": self.flow_table_size, "syn_sources": self.syn_table_size,
                "samples": self.ringbuf_size}

    def populate(self, maps: NodeMaps) -> None:
        # Nothing to write; but refuse to run with map sizes other than configured (a
        # loader that ignored map_sizes() would otherwise silently drop the config).
        for name, want in self.map_sizes().items():
            have = maps[name].max_entries
            if have != want:
                raise SpecError(f"telemetry node '{maps.instance}': map '{name}' has "
                                f"{have} entries but the config asks for {want}; load it "
                                f"with nfpipe.testing.load_nf() or a loader that applies "
                                f"map_sizes()")

    # --- reading the maps -----------------------------------------------------------------

    @staticmethod
    def flows(maps: NodeMaps) -> dict[FlowKey, dict[str, int]]:
        out = {}
        for k, v in maps["flows"].items():
            key = FlowKey(_addr(k["saddr"], k["family"]), _addr(k["daddr"], k["family"]),
                          k["proto"], socket.ntohs(k["sport"]), socket.ntohs(k["dport"]))
            out[key] = dict(v)
        return out

    @staticmethod
    def syn_sources(maps: NodeMaps) -> dict[Any, int]:
        return {_addr(k["addr"], k["family"]): v for k, v in maps["syn_sources"].items()}

    @staticmethod
    def proto_histogram(maps: NodeMaps) -> dict[str, dict[str, int]]:
        m = maps["proto_hist"]
        return {name: _sum_percpu(m[i]) for i, name in enumerate(PROTO_CLASSES)}

    @staticmethod
    def size_histogram(maps: NodeMaps) -> list[dict[str, int]]:
        m = maps["size_hist"]
        return [_sum_percpu(m[i]) for i in range(SIZE_BUCKETS)]

    @staticmethod
    def counters(maps: NodeMaps) -> dict[str, int]:
        m = maps["counters"]
        return {name: _sum_percpu(m[i]) for i, name in enumerate(COUNTERS)}

    @staticmethod
    def samples(maps: NodeMaps, limit: int | None = None) -> list[Sample]:
        """Drain the sample ring buffer (consumed samples are gone from it)."""
        with RingBuffer(maps["samples"]) as rb:
            return [decode_sample(r) for r in rb.drain(limit)]

    def write_pcap(self, maps: NodeMaps, target: str | os.PathLike | BinaryIO, *,
                   nanoseconds: bool = True, follow: float | None = None,
                   limit: int | None = None) -> int:
        """Drain the samples into a pcap file (a path, or a binary file object such as
        stdout for ``tcpdump -r -``); returns how many were written.  With *follow*
        (seconds; 0 = until interrupted) keep waiting for new samples, flushing each.
        Timestamps move from CLOCK_MONOTONIC to wall-clock time at the time of writing."""
        offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.monotonic_ns()
        written = 0
        deadline = None if not follow else time.monotonic() + follow
        with PcapWriter(target, snaplen=self.snaplen, nanoseconds=nanoseconds) as w, \
                RingBuffer(maps["samples"]) as rb:
            while True:
                for r in rb.drain(None if limit is None else limit - written):
                    s = decode_sample(r)
                    w.write(s.data, s.ts_ns + offset, s.pkt_len)
                    written += 1
                w.flush()
                if follow is None or (limit is not None and written >= limit):
                    return written
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return written
                rb.poll(0.5 if left is None else min(0.5, left))


def decode_sample(record: bytes) -> Sample:
    ts, pkt_len, cap = SAMPLE_HDR.unpack_from(record)
    cap = min(cap, MAX_SNAPLEN, len(record) - SAMPLE_HDR.size)
    return Sample(ts, pkt_len, bytes(record[SAMPLE_HDR.size:SAMPLE_HDR.size + cap]))


# --- reference model ------------------------------------------------------------------------

RECORD_BYTES = (8 + SAMPLE_SIZE + 7) & ~7      # one sample in the ring: header + padded body


class TelemetryModel:
    """What bpf/telemetry.c computes, from the packet sequence (one CPU).

    ``process(data)`` returns ``(0, data)``; the counters live in the attributes.
    ``ring_drained()`` tells the model the consumer emptied the ring buffer (the
    kernel refuses a sample when the ring holds ringbuf_size - 1 bytes or more
    after it; the model tracks that to predict ringbuf_full exactly)."""

    def __init__(self, nf: Telemetry):
        self.nf = nf
        self.flows: dict[FlowKey, list[int]] = {}
        self.syn_sources: dict[Any, int] = {}
        self.proto_hist = {name: {"packets": 0, "bytes": 0} for name in PROTO_CLASSES}
        self.size_hist = [{"packets": 0, "bytes": 0} for _ in range(SIZE_BUCKETS)]
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.tick = 0
        self.ring_used = 0
        self.pending_samples: list[tuple[int, bytes]] = []   # (pkt_len, data), in the ring

    def ring_drained(self) -> list[tuple[int, bytes]]:
        out, self.pending_samples, self.ring_used = self.pending_samples, [], 0
        return out

    def process(self, data: bytes) -> tuple[int, bytes]:
        nf, n = self.nf, len(data)
        p = P.parse_packet(data)
        self.counters["packets"] += 1
        if p.malformed:
            self.counters["malformed"] += 1
        if nf.hist_on:
            for b in (self.proto_hist[PROTO_CLASSES[proto_class(p)]],
                      self.size_hist[size_bucket(n)]):
                b["packets"] += 1
                b["bytes"] += n
        if not p.malformed and (p.is_ipv4 or p.is_ipv6):
            if nf.flows_on:
                key = FlowKey(ipaddress.ip_address(p.src), ipaddress.ip_address(p.dst),
                              p.l4_proto, p.sport, p.dport)
                f = self.flows.setdefault(key, [0, 0])
                f[0] += 1
                f[1] += n
            if (nf.syn_on and p.l4_proto == P.IPPROTO_TCP and p.has_l4 and
                    p.tcp_flags & 0x12 == 0x02):
                src = ipaddress.ip_address(p.src)
                self.syn_sources[src] = self.syn_sources.get(src, 0) + 1
        if nf.sample_rate:
            self.tick += 1
            if self.tick % nf.sample_rate == 0:
                if self.ring_used + RECORD_BYTES >= nf.ringbuf_size:
                    self.counters["ringbuf_full"] += 1
                else:
                    self.ring_used += RECORD_BYTES
                    self.counters["sampled"] += 1
                    self.pending_samples.append((n, data[:nf.snaplen]))
        return 0, data

    def flow_table(self) -> dict[FlowKey, dict[str, int]]:
        return {k: {"packets": v[0], "bytes": v[1]} for k, v in self.flows.items()}


def bench_cases() -> dict:
    """`nfpipe bench`: telemetry with its defaults (flows, SYN sources, histograms)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    packet = bytes(Ether() / IP(src="192.0.2.1", dst="198.51.100.2") /
                   TCP(sport=1234, dport=80, flags="S"))
    return {"telemetry": (lambda: Telemetry({}), packet, True),
            "telemetry-sampling": (lambda: Telemetry({"sample_rate": 64}), packet, True)}
