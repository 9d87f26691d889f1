"""telemetry (bpf/telemetry.c) in XDP and TC against its Python reference model: flow
table, SYN counts per source, histograms, counters, sampling into the ring buffer and
pcap output — and every packet leaves on port 0 unchanged."""
from __future__ import annotations

import ipaddress
import mmap
import os
import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import rdpcap

import nfpipe
from nfpipe.catalog import get
from nfpipe.catalog.pcap import MAGIC_NSEC, MAGIC_USEC, PcapWriter, read_pcap
from nfpipe.catalog.telemetry import (
    COUNTERS,
    PROTO_CLASSES,
    RECORD_BYTES,
    SIZE_BUCKETS,
    FlowKey,
    Telemetry,
    TelemetryModel,
    size_bucket,
)
from nfpipe.errors import KernelError, SpecError
from nfpipe.runtime import node_stats
from nfpipe.testing import load_nf
from tests.nf.fused import two_instances

kernel = pytest.mark.kernel
HOOKS = ["xdp", "tc"]
ROOT = Path(__file__).parent.parent.parent
E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


# --- config (no kernel) ---------------------------------------------------------------------

@pytest.mark.parametrize("config, match", [
    ({"flows": 1}, "'flows' must be true or false"),
    ({"syn_sources": "yes"}, "'syn_sources' must be true or false"),
    ({"histograms": None}, "'histograms' must be true or false"),
    ({"flow_table_size": 0}, "'flow_table_size' must be in 1.."),
    ({"flow_table_size": "big"}, "'flow_table_size' must be an integer"),
    ({"syn_table_size": 1 << 30}, "'syn_table_size' must be in"),
    ({"sample_rate": -1}, "'sample_rate' must be in 0.."),
    ({"sample_rate": 1.5}, "'sample_rate' must be an integer"),
    ({"sample_rate": True}, "'sample_rate' must be an integer"),
    ({"snaplen": 0}, "'snaplen' must be in 1..256"),
    ({"snaplen": 257}, "'snaplen' must be in 1..256"),
    ({"ringbuf_size": 3 * mmap.PAGESIZE}, "'ringbuf_size' must be a power of two"),
    ({"ringbuf_size": 1024}, "'ringbuf_size' must be in"),
    ({"ringbuf": 4096}, "unknown config key"),
])
def test_config_errors(config, match):
    with pytest.raises(SpecError, match=match):
        Telemetry(config)


def test_config_defaults_and_constants():
    t = Telemetry()
    assert get("telemetry") is Telemetry and t.ports == ("out",) and t.kind == "telemetry"
    assert t.constants() == {"flows_on": 1, "syn_on": 1, "hist_on": 1, "sample_rate": 0,
                             "snaplen": 128}
    assert t.map_sizes() == {"flows": 65536, "syn_sources": 65536, "samples": 262144}
    t = Telemetry({"flows": False, "histograms": False, "sample_rate": 10, "snaplen": 64,
                   "ringbuf_size": 1 << 20, "flow_table_size": 1000})
    assert t.constants() == {"flows_on": 0, "syn_on": 1, "hist_on": 0, "sample_rate": 10,
                             "snaplen": 64}
    assert t.map_sizes()["samples"] == 1 << 20 and t.map_sizes()["flows"] == 1000


def test_size_buckets():
    assert [size_bucket(n) for n in (0, 1, 2, 3, 63, 64, 127, 128, 1514, 65535, 65536, 10**6)] \
        == [0, 0, 1, 1, 5, 6, 6, 7, 10, 15, 16, 16]


def test_pcap_writer_format(tmp_path):
    path = tmp_path / "x.pcap"
    with PcapWriter(path, snaplen=4) as w:
        w.write(b"abcdefgh", 1_700_000_000_123_456_789, 100)
    raw = path.read_bytes()
    assert struct.unpack("=IHHiIII", raw[:24]) == (MAGIC_NSEC, 2, 4, 0, 0, 4, 1)
    assert struct.unpack("=IIII", raw[24:40]) == (1_700_000_000, 123_456_789, 4, 100)
    assert raw[40:] == b"abcd"
    with PcapWriter(path, nanoseconds=False) as w:
        w.write(b"xy", 1_700_000_000_123_456_789)
    hdr, recs = read_pcap(path)
    assert hdr["magic"] == MAGIC_USEC and recs == [(1_700_000_000_123_456_000, 2, b"xy")]
    with pytest.raises(ValueError):
        PcapWriter(tmp_path / "y.pcap", snaplen=0)


# --- kernel helpers -----------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def one_cpu():
    """Sampling counts per CPU: keep every test run on one CPU so the model's single
    counter predicts exactly which packets are sampled."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(old)})
    yield
    os.sched_setaffinity(0, old)


def tc_test_run_refuses(data: bytes) -> bool:
    """BPF_PROG_TEST_RUN for TC refuses IPv4 with < 20 bytes of IP header, IPv6 < 40."""
    et = data[12:14]
    return (et == b"\x08\x00" and len(data) - 14 < 20) or (et == b"\x86\xdd" and len(data) < 54)


def run(nf, model: TelemetryModel | None, data: bytes) -> bool:
    """One packet through kernel and model; False when TC's test run refuses it."""
    if nf.hook == "tc" and tc_test_run_refuses(data):
        with pytest.raises(KernelError, match="EINVAL"):
            nf.run(data)
        return False
    r = nf.run(data)
    assert r.result == 0 and r.retval == nf.expected_retval(0)
    assert r.data == data
    if model is not None:
        assert model.process(data) == (0, data)
    return True


def compare(nf, model: TelemetryModel, t0: int | None = None, t1: int | None = None) -> None:
    maps = nf.maps
    flows = Telemetry.flows(maps)
    assert {k: {"packets": v["packets"], "bytes": v["bytes"]} for k, v in flows.items()} \
        == model.flow_table()
    if t0 is not None:
        for v in flows.values():
            assert t0 <= v["first_ns"] <= v["last_ns"] <= t1
    assert Telemetry.syn_sources(maps) == model.syn_sources
    assert Telemetry.proto_histogram(maps) == model.proto_hist
    assert Telemetry.size_histogram(maps) == model.size_hist
    assert Telemetry.counters(maps) == model.counters


def reset(nf) -> None:
    for name in ("flows", "syn_sources", "proto_hist", "size_hist", "counters", "sample_tick"):
        nf.maps[name].clear()
    Telemetry.samples(nf.maps)


def check_samples(nf, model: TelemetryModel) -> int:
    got = [(s.pkt_len, s.data) for s in Telemetry.samples(nf.maps)]
    assert got == model.ring_drained()
    return len(got)


# --- table-driven packets ------------------------------------------------------------------------

def packets() -> dict[str, bytes]:
    frags = fragment(E / IP(src="192.0.2.1", dst="198.51.100.2", id=7) / UDP(dport=53) /
                     Raw(b"y" * 200), fragsize=64)
    v4 = IP(src="192.0.2.1", dst="198.51.100.2")
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    pk = {
        "tcp-syn": E / v4 / TCP(sport=1234, dport=80, flags="S"),
        "tcp-syn-ack": E / v4 / TCP(sport=80, dport=1234, flags="SA"),
        "tcp-syn-ecn": E / v4 / TCP(sport=1, dport=2, flags="SEC"),
        "udp-big": E / v4 / UDP(sport=1, dport=53) / Raw(b"x" * 1400),
        "icmp-echo": E / v4 / ICMP(type=8, id=0x4242),
        "icmp-unreach": E / v4 / ICMP(type=3, code=1),
        "gre": E / IP(src="192.0.2.1", dst="198.51.100.2", proto=47) / Raw(b"g" * 8),
        "ipv4-options": E / IP(src="192.0.2.9", dst="198.51.100.2",
                               options=b"\x94\x04\x00\x00") / TCP(dport=443, flags="S"),
        "vlan": E / Dot1Q(vlan=100) / v4 / TCP(dport=80, flags="S"),
        "qinq": E / Dot1AD(vlan=200) / Dot1Q(vlan=100) / v4 / UDP(dport=53),
        "three-tags": E / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / v4 / UDP(),
        "frag-first": frags[0],
        "frag-later": frags[1],
        "ipv6-syn": E / v6 / TCP(sport=5, dport=443, flags="S"),
        "ipv6-ext-udp": E / v6 / IPv6ExtHdrHopByHop() / UDP(dport=53),
        "ipv6-frag-later": E / v6 / IPv6ExtHdrFragment(offset=8, nh=17) / Raw(b"z" * 16),
        "icmpv6-echo": E / v6 / ICMPv6EchoRequest(id=77),
        "ipv6-other": E / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=59),
        "arp": E / ARP(),
    }
    out = {k: bytes(v) for k, v in pk.items()}
    tcp = out["tcp-syn"]
    out["truncated-tcp"] = tcp[:14 + 20 + 10]
    out["truncated-ipv4"] = tcp[:14 + 12]
    out["truncated-ipv6"] = out["ipv6-syn"][:14 + 30]
    out["ihl-too-small"] = tcp[:14] + bytes([0x44]) + tcp[15:]
    out["tcp-doff-too-small"] = tcp[:14 + 32] + bytes([0x20]) + tcp[14 + 33:]
    out["eth-only"] = tcp[:14]
    return out


EXPECT_CLASS = {
    "tcp-syn": "ipv4_tcp", "tcp-syn-ack": "ipv4_tcp", "tcp-syn-ecn": "ipv4_tcp",
    "udp-big": "ipv4_udp", "icmp-echo": "ipv4_icmp", "icmp-unreach": "ipv4_icmp",
    "gre": "ipv4_other", "ipv4-options": "ipv4_tcp", "vlan": "ipv4_tcp", "qinq": "ipv4_udp",
    "three-tags": "malformed", "frag-first": "ipv4_udp", "frag-later": "ipv4_udp",
    "ipv6-syn": "ipv6_tcp", "ipv6-ext-udp": "ipv6_udp", "ipv6-frag-later": "ipv6_udp",
    "icmpv6-echo": "ipv6_icmp", "ipv6-other": "ipv6_other", "arp": "other_l3",
    "truncated-tcp": "malformed", "truncated-ipv4": "malformed", "truncated-ipv6": "malformed",
    "ihl-too-small": "malformed", "tcp-doff-too-small": "malformed", "eth-only": "malformed",
}
EXPECT_SYN = {"tcp-syn": "192.0.2.1", "tcp-syn-ecn": "192.0.2.1", "ipv4-options": "192.0.2.9",
              "vlan": "192.0.2.1", "ipv6-syn": "2001:db8::1"}


@pytest.fixture(scope="module", params=HOOKS)
def full(request):
    """Every feature on, every packet sampled."""
    with load_nf(Telemetry({"sample_rate": 1, "snaplen": 96}), request.param) as nf:
        yield nf


@kernel
@pytest.mark.parametrize("name", sorted(packets()))
def test_each_packet_class(full, name):
    data = packets()[name]
    reset(full)
    model = TelemetryModel(full.nf)
    if not run(full, model, data):
        assert full.hook == "tc" and name in ("truncated-ipv4", "truncated-ipv6", "eth-only")
        return
    compare(full, model)
    hist = Telemetry.proto_histogram(full.maps)
    assert hist[EXPECT_CLASS[name]] == {"packets": 1, "bytes": len(data)}
    syn = Telemetry.syn_sources(full.maps)
    assert syn == ({ipaddress.ip_address(EXPECT_SYN[name]): 1} if name in EXPECT_SYN else {})
    flows = Telemetry.flows(full.maps)
    assert len(flows) == (0 if EXPECT_CLASS[name] in ("malformed", "other_l3") else 1)
    assert check_samples(full, model) == 1


@kernel
def test_flow_key_fields(full):
    reset(full)
    run(full, None, bytes(E / IP(src="10.1.2.3", dst="10.4.5.6") / UDP(sport=1111, dport=53)))
    run(full, None, bytes(E / IPv6(src="2001:db8::7", dst="2001:db8::8") /
                          ICMPv6EchoRequest(id=9)))
    run(full, None, packets()["frag-later"])
    flows = Telemetry.flows(full.maps)
    ip = ipaddress.ip_address
    assert set(flows) == {
        FlowKey(ip("10.1.2.3"), ip("10.4.5.6"), 17, 1111, 53),
        FlowKey(ip("2001:db8::7"), ip("2001:db8::8"), 58, 9, 128 << 8),
        FlowKey(ip("192.0.2.1"), ip("198.51.100.2"), 17, 0, 0),     # no ports in later frags
    }
    Telemetry.samples(full.maps)


# --- the seed's example: SYNs per source -----------------------------------------------------------

@kernel
@pytest.mark.parametrize("hook", HOOKS)
def test_syn_counts_per_source(hook):
    rng = random.Random(5)
    sent = {"192.0.2.1": 17, "192.0.2.2": 3, "10.0.0.9": 40, "2001:db8::1": 11,
            "::192.0.2.1": 6, "c000:201::": 4}       # v6 look-alikes of 192.0.2.1 stay apart
    order = [a for a, n in sent.items() for _ in range(n)]
    rng.shuffle(order)
    with load_nf(Telemetry({"flows": False, "histograms": False}), hook) as nf:
        for i, src in enumerate(order):
            l3 = IPv6(src=src, dst="2001:db8::99") if ":" in src else IP(src=src, dst="10.9.9.9")
            run(nf, None, bytes(E / l3 / TCP(sport=1000 + i, dport=80, flags="S")))
            # the other half of a handshake and teardown: not SYN-without-ACK
            run(nf, None, bytes(E / l3 / TCP(sport=1000 + i, dport=80,
                                             flags=rng.choice(["SA", "A", "R", "FA", "PA"]))))
        got = Telemetry.syn_sources(nf.maps)
        assert got == {ipaddress.ip_address(a): n for a, n in sent.items()}
        assert len(nf.maps["flows"]) == 0
        assert Telemetry.proto_histogram(nf.maps)["ipv4_tcp"]["packets"] == 0
        assert Telemetry.counters(nf.maps)["packets"] == 2 * len(order)


# --- seeded random property test -------------------------------------------------------------------

V4_POOL = [bytes([10, 0, i // 8, i % 8 + 1]) for i in range(24)]
V6_POOL = [bytes.fromhex("20010db8") + bytes(10) + bytes([0, i + 1]) for i in range(12)]
PORTS = [53, 80, 443, 1234, 5353, 40000]
TCP_FLAGS = [0x02, 0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0xC2]


def random_packet(rng: random.Random) -> bytes:
    """Raw packets built with struct (fast): VLANs, IPv4 (options, fragments), IPv6 (ext
    headers, fragments), TCP/UDP/ICMP/other, payloads up to ~1.4 KB; some cut or mangled."""
    out = bytearray(b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01")
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        out += struct.pack("!HH", 0x8100, rng.randrange(4096))
    r = rng.random()
    l4 = rng.choice(["tcp", "tcp", "udp", "icmp", "other"])
    payload = rng.randbytes(rng.choice([0, rng.randrange(64), rng.randrange(600),
                                        rng.randrange(1000, 1400)]))
    if r < 0.08:
        out += struct.pack("!H", rng.choice([0x0806, 0x88CC, 0x8847])) + rng.randbytes(46)
        return bytes(out)
    v6 = r > 0.6
    if l4 == "tcp":
        l4h = struct.pack("!HHIIBBHHH", rng.choice(PORTS), rng.choice(PORTS), 0, 0, 0x50,
                          rng.choice(TCP_FLAGS), 1024, 0, 0)
        proto = 6
    elif l4 == "udp":
        l4h = struct.pack("!HHHH", rng.choice(PORTS), rng.choice(PORTS), 8 + len(payload), 0)
        proto = 17
    elif l4 == "icmp":
        l4h = struct.pack("!BBHHH", rng.choice([8, 0, 3] if not v6 else [128, 129, 1]),
                          rng.randrange(4), 0, rng.randrange(4), 1)
        proto = 58 if v6 else 1
    else:
        l4h, proto = rng.randbytes(8), 47
    body = l4h + payload
    if not v6:
        opts = b"\x01" * 4 * rng.choice([0, 0, 0, 1, 3])
        frag = rng.choice([0] * 8 + [0x2000, 0x0005, 0x2003])
        ihl = 5 + len(opts) // 4
        out += struct.pack("!H", 0x0800) + struct.pack(
            "!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(body), 1, frag, 64, proto, 0,
            rng.choice(V4_POOL), rng.choice(V4_POOL)) + opts + body
    else:
        ext, nxt = b"", proto
        kind = rng.choice([None, None, None, "hbh", "frag", "frag-later"])
        if kind == "hbh":
            ext, nxt = struct.pack("!BB6x", proto, 0), 0
        elif kind:
            ext = struct.pack("!BBHI", proto, 0, 8 << 3 if kind == "frag-later" else 1, 7)
            nxt = 44
        out += struct.pack("!H", 0x86DD) + struct.pack(
            "!IHBB16s16s", 0x60000000, len(ext) + len(body), nxt, 64,
            rng.choice(V6_POOL), rng.choice(V6_POOL)) + ext + body
    roll = rng.random()
    if roll < 0.08:
        out = out[:rng.randrange(14, len(out))]
    elif roll < 0.12:
        i = rng.randrange(12, min(len(out), 80))
        out[i] = rng.randrange(256)
    return bytes(out)


@kernel
@pytest.mark.parametrize("hook", HOOKS)
def test_random_packets_match_the_model(hook):
    rng = random.Random(0x7E1E)
    nf_cfg = Telemetry({"sample_rate": 7, "snaplen": 200})
    with load_nf(nf_cfg, hook) as nf:
        model = TelemetryModel(nf_cfg)
        coarse = 6                  # CLOCK_MONOTONIC_COARSE (Python has no name for it)
        t0 = time.clock_gettime_ns(coarse)
        ran = sampled = 0
        for i in range(11000):
            ran += run(nf, model, random_packet(rng))
            if i % 1000 == 999:
                sampled += check_samples(nf, model)
        t1 = time.clock_gettime_ns(coarse)
        sampled += check_samples(nf, model)
        compare(nf, model, t0, t1)
        c = Telemetry.counters(nf.maps)
        assert ran >= 10000 and c["packets"] == ran and sampled == ran // 7 == c["sampled"]
        assert c["ringbuf_full"] == 0 and c["malformed"] > 100
        assert len(Telemetry.flows(nf.maps)) > 500 and len(model.syn_sources) > 20
        assert all(Telemetry.size_histogram(nf.maps)[b]["packets"] for b in (5, 6, 8, 9, 10))
        # The pipeline's own per-node counters agree: every packet left on port 0.
        stats = node_stats(nf.obj.maps["nfp_stats"], [("t", 0, Telemetry.ports)])["t"]
        assert stats["out"].packets == ran and list(stats) == ["out"]


# --- sampling and pcap ---------------------------------------------------------------------------------

@kernel
@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("rate", [1, 3, 50])
def test_sample_rate(hook, rate):
    pk = [bytes(E / IP(src="10.0.0.1", dst="10.0.0.2", id=i) / UDP(dport=i) / Raw(bytes(i)))
          for i in range(1, 101)]
    nf_cfg = Telemetry({"sample_rate": rate, "snaplen": 48, "flows": False})
    with load_nf(nf_cfg, hook) as nf:
        for p in pk:
            run(nf, None, p)
        got = Telemetry.samples(nf.maps)
        want = [p for i, p in enumerate(pk, 1) if i % rate == 0]
        assert [(s.pkt_len, s.data) for s in got] == [(len(p), p[:48]) for p in want]
        assert Telemetry.counters(nf.maps)["sampled"] == 100 // rate


@kernel
@pytest.mark.parametrize("hook", HOOKS)
def test_ringbuf_full_is_counted_and_packets_pass(hook):
    size = mmap.PAGESIZE
    nf_cfg = Telemetry({"sample_rate": 1, "ringbuf_size": size})
    fits = (size - 1) // RECORD_BYTES
    with load_nf(nf_cfg, hook) as nf:
        model = TelemetryModel(nf_cfg)
        pk = [bytes(E / IP(id=i) / TCP(sport=i, flags="S")) for i in range(fits + 5)]
        for p in pk:
            run(nf, model, p)
        c = Telemetry.counters(nf.maps)
        assert (c["sampled"], c["ringbuf_full"]) == (fits, 5)
        compare(nf, model)
        assert check_samples(nf, model) == fits
        run(nf, model, pk[0])                         # room again after the drain
        assert check_samples(nf, model) == 1


@kernel
@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("nano", [True, False])
def test_pcap_output_is_byte_exact(hook, nano, tmp_path):
    snap = 64
    pk = [bytes(E / IP(src="192.0.2.1", dst="198.51.100.2") / TCP(sport=i, dport=80, flags="S")
                / Raw(bytes([i]) * (i * 7))) for i in range(1, 30)]
    pk.append(bytes(E / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP() / Raw(b"q" * 300)))
    nf_cfg = Telemetry({"sample_rate": 1, "snaplen": snap})
    path = tmp_path / "s.pcap"
    with load_nf(nf_cfg, hook) as nf:
        w0 = time.time_ns()
        for p in pk:
            run(nf, None, p)
        assert nf_cfg.write_pcap(nf.maps, path, nanoseconds=nano) == len(pk)
        w1 = time.time_ns()
        assert nf_cfg.write_pcap(nf.maps, tmp_path / "empty.pcap") == 0   # drained
    caps = rdpcap(str(path))
    assert [bytes(c) for c in caps] == [p[:snap] for p in pk]
    assert [c.wirelen for c in caps] == [len(p) for p in pk]
    hdr, recs = read_pcap(path)
    assert hdr == {"magic": MAGIC_NSEC if nano else MAGIC_USEC, "version": (2, 4),
                   "snaplen": snap, "linktype": 1}
    ts = [r[0] for r in recs]
    assert ts == sorted(ts) and w0 - 10**6 <= ts[0] and ts[-1] <= w1 + 10**6
    assert caps[0].haslayer(TCP) and caps[0][TCP].sport == 1
    if shutil.which("tcpdump"):
        out = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True,
                             text=True, check=True).stdout
        assert len(out.splitlines()) == len(pk)


# --- configuration in the kernel ---------------------------------------------------------------------

@kernel
@pytest.mark.parametrize("hook", HOOKS)
def test_disabled_parts_count_nothing_and_vanish(hook):
    pk = [bytes(E / IP(src="10.0.0.1") / TCP(flags="S")), bytes(E / IPv6() / UDP())]
    off = Telemetry({"flows": False, "syn_sources": False, "histograms": False})
    with load_nf(off, hook) as nf, load_nf(Telemetry(), hook) as on:
        for p in pk:
            run(nf, None, p)
            run(on, None, p)
        assert len(nf.maps["flows"]) == len(nf.maps["syn_sources"]) == 0
        assert all(v["packets"] == 0 for v in Telemetry.proto_histogram(nf.maps).values())
        assert Telemetry.counters(nf.maps)["packets"] == 2
        assert len(on.maps["flows"]) == 2 and len(on.maps["syn_sources"]) == 1
        # Dead branches are gone from the verified program, not just skipped.
        small = nf.program.info().xlated_prog_len
        big = on.program.info().xlated_prog_len
        assert small < big * 0.85, (small, big)


@kernel
@pytest.mark.parametrize("hook", HOOKS)
def test_flow_table_is_lru_bounded(hook):
    nf_cfg = Telemetry({"flow_table_size": 64})
    with load_nf(nf_cfg, hook) as nf:
        assert nf.maps["flows"].max_entries == 64
        for i in range(500):
            run(nf, None, bytes(E / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=i + 1)))
        flows = Telemetry.flows(nf.maps)
        assert 0 < len(flows) <= 64
        assert FlowKey(ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.2"),
                       17, 500, 53) in flows
        assert Telemetry.counters(nf.maps)["flow_fail"] == 0


@kernel
def test_plain_harness_never_ignores_the_sizes():
    """The shared harness applies map_sizes(): the node comes up with the configured size."""
    with load_nf(Telemetry({"flow_table_size": 128}), "xdp") as nf:
        assert nf.maps["flows"].max_entries == 128
    with load_nf(Telemetry(), "xdp") as nf:           # defaults: fine either way
        run(nf, None, packets()["tcp-syn"])
        assert len(nf.maps["flows"]) == 1


@kernel
def test_two_instances_in_one_program(tmp_path):
    """Fused mode: two instances of telemetry.c inline into one program, each with its
    own maps and constants."""
    src = tmp_path / "fused_tlm.c"
    src.write_text(two_instances(ROOT / "bpf" / "telemetry.c"))
    spec = nfpipe.ObjectSpec.from_file(nfpipe.compile(src, include_dirs=[ROOT / "bpf"]))
    with nfpipe.Object.load(spec, constants={"b__flows_on": 0}) as obj:
        data = packets()["tcp-syn"]
        assert obj.programs["fused"].test_run(data).retval == 2
        assert len(obj.maps["a__flows"]) == 1 and len(obj.maps["b__flows"]) == 0
        assert len(obj.maps["a__syn_sources"]) == len(obj.maps["b__syn_sources"]) == 1


def test_model_counts_what_it_sees():
    """The model on its own (no kernel): a SYN, a SYN-ACK, an ARP."""
    m = TelemetryModel(Telemetry({"sample_rate": 2}))
    for name in ("tcp-syn", "tcp-syn-ack", "arp"):
        m.process(packets()[name])
    assert m.syn_sources == {ipaddress.ip_address("192.0.2.1"): 1}
    assert len(m.flows) == 2 and m.counters["sampled"] == 1
    assert m.proto_hist["other_l3"]["packets"] == 1 and sum(
        b["packets"] for b in m.size_hist) == 3
    assert len(COUNTERS) == 7 and len(PROTO_CLASSES) == 10 and SIZE_BUCKETS == 17
