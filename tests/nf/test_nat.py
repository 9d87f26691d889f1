"""nat (bpf/nat.c) in the kernel, in XDP and TC, against its reference model NatModel.

Every translated packet is compared byte for byte with the model and its checksums
are checked against scapy's recomputation; the property tests drive a stateful
random mix (outbound flows, replies, DNAT, unrelated and hostile traffic) through
kernel and model side by side and compare result, bytes and counters.
"""
from __future__ import annotations

import ipaddress
import random
import socket
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from nfpipe.catalog import nat as N
from nfpipe.catalog.base import NodeMaps
from nfpipe.catalog.csum import checksum
from nfpipe.catalog.nat import Nat, NatModel, counters
from nfpipe.errors import SpecError
from nfpipe.nfabi import Verdict
from nfpipe.testing import LoadedNF, load_nf

kernel = pytest.mark.kernel
HOOKS = ["xdp", "tc"]

EXT = "203.0.113.1"
REMOTE = "198.51.100.7"
CLIENT = "192.0.2.44"
E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
CFG = {
    "internal": ["10.0.0.0/8", "192.168.0.0/16"],
    "external_ip": EXT,
    "port_range": "20000-29999",
    "forwards": [{"proto": "tcp", "port": 8080, "to": "10.0.0.5:80"},
                 {"proto": "udp", "port": 5353, "to": "192.168.1.9:53"}],
}


# ---- helpers ------------------------------------------------------------------------------

def assert_checksums(data: bytes) -> None:
    """Every checksum in the packet equals scapy's recomputation (a zero UDP
    checksum, meaning "none", must have stayed zero: callers check that)."""
    pkt = Ether(data)
    if IP not in pkt:
        return
    have, layers = {}, []
    for cls in (IP, TCP, UDP, ICMP):
        if cls in pkt and not (cls is UDP and pkt[UDP].chksum == 0):
            layers.append(cls)
            have[cls] = pkt[cls].chksum
            del pkt[cls].chksum
    again = Ether(bytes(pkt))
    for cls in layers:
        assert have[cls] == again[cls].chksum, f"{cls.__name__} checksum wrong"


class Harness:
    """A loaded NAT and its model, fed the same packets."""

    def __init__(self, loaded: LoadedNF, model: NatModel):
        self.nf = loaded
        self.model = model

    @property
    def hook(self) -> str:
        return self.nf.hook

    def send(self, pkt, expect: int | None = None) -> bytes:
        data = bytes(pkt)
        run = self.nf.run(data)
        result, out = self.model.process(data)
        assert run.result == int(result)
        assert run.retval == self.nf.expected_retval(run.result)
        if run.result >= 0:
            assert run.data == out
            if run.data != data:
                assert_checksums(run.data)
        if expect is not None:
            assert run.result == int(expect)
        return run.data

    def counters(self) -> dict[str, int]:
        got = counters(self.nf.maps)
        assert got == self.model.counters
        return got


class SmallTableNF(LoadedNF):
    """LoadedNF with the connection table resized (the LRU's eviction in a test)."""

    def __init__(self, nf: Nat, hook: str, table_size: int, map_type: int | None = None):
        from nfpipe.compose.nodes import build_nf
        from nfpipe.loader.object import Object
        from nfpipe.loader.objspec import ObjectSpec
        self.nf, self.hook, self.instance = nf, hook, nf.default_instance
        path = build_nf(nf.source, hook=hook, instance=self.instance, mode="standalone")
        spec = ObjectSpec.from_file(path).copy()
        spec.maps[f"{self.instance}__conns"].max_entries = table_size
        if map_type is not None:
            spec.maps[f"{self.instance}__conns"].type = map_type
        constants = {f"{self.instance}__{k}": v for k, v in nf.constants().items()}
        self.obj = Object.load(spec, constants=constants)
        self.maps = NodeMaps(self.obj.maps, self.instance)
        nf.populate(self.maps)
        self.program = self.obj.programs[self.instance]


@pytest.fixture(params=HOOKS)
def hook(request):
    return request.param


def harness(hook: str, **overrides) -> Harness:
    nf = Nat({**CFG, **overrides})
    return Harness(load_nf(nf, hook), nf.model())


@pytest.fixture(scope="module", params=HOOKS)
def _loaded(request):
    with load_nf(Nat(CFG), request.param) as loaded:
        yield loaded


@pytest.fixture
def nat(_loaded):
    """The module's NAT for one hook, with an empty table and zeroed counters."""
    _loaded.maps["conns"].clear()
    _loaded.maps["frags"].clear()
    for i in range(len(N.COUNTERS)):
        _loaded.maps["stats"][i] = 0
    return Harness(_loaded, _loaded.nf.model())


def out_tcp(sport=40000, dst=REMOTE, dport=443, src="10.1.2.3", payload=b"hello", flags="S"):
    return E / IP(src=src, dst=dst, id=1) / TCP(sport=sport, dport=dport, flags=flags) / \
        Raw(payload)


# ---- SNAT -----------------------------------------------------------------------------------

@kernel
@pytest.mark.parametrize("proto", ["tcp", "udp", "icmp"])
def test_snat_outbound_and_reply(nat, proto):
    src, port = "10.1.2.3", 40000
    l4 = {"tcp": TCP(sport=port, dport=443, flags="S", seq=7),
          "udp": UDP(sport=port, dport=53),
          "icmp": ICMP(type=8, id=port, seq=3)}[proto]
    out = Ether(nat.send(E / IP(src=src, dst=REMOTE) / l4 / Raw(b"payload!"), expect=0))
    assert out[IP].src == EXT and out[IP].dst == REMOTE
    assert out[Raw].load == b"payload!"
    ext_port = out[ICMP].id if proto == "icmp" else out[IP].payload.sport
    assert 20000 <= ext_port <= 29999
    # The model predicted the same port (send() compared the bytes); the hash is stable:
    expected = 20000 + N.flow_hash({"tcp": 6, "udp": 17, "icmp": 1}[proto],
                                   int(ipaddress.IPv4Address(src)),
                                   int(ipaddress.IPv4Address(REMOTE)), port,
                                   port if proto == "icmp" else {"tcp": 443, "udp": 53}[proto]
                                   ) % 10000
    assert ext_port == expected
    # Same flow again: same mapping, no new one.
    again = Ether(nat.send(E / IP(src=src, dst=REMOTE) / l4 / Raw(b"payload!"), expect=0))
    assert bytes(again) == bytes(out)
    rl4 = {"tcp": TCP(sport=443, dport=ext_port, flags="SA", ack=8),
           "udp": UDP(sport=53, dport=ext_port),
           "icmp": ICMP(type=0, id=ext_port, seq=3)}[proto]
    back = Ether(nat.send(E / IP(src=REMOTE, dst=EXT) / rl4 / Raw(b"answer"), expect=0))
    assert back[IP].src == REMOTE and back[IP].dst == src
    if proto == "icmp":
        assert back[ICMP].id == port and back[ICMP].type == 0
    else:
        assert back[IP].payload.dport == port and back[IP].payload.sport == rl4.sport
    c = nat.counters()
    assert (c["new_snat"], c["xlate_src"], c["xlate_dst"]) == (1, 2, 1)


@kernel
def test_udp_zero_checksum_stays_zero(nat):
    out = Ether(nat.send(E / IP(src="10.9.9.9", dst=REMOTE) / UDP(sport=5000, dport=53, chksum=0)
                         / Raw(b"q"), expect=0))
    assert out[UDP].chksum == 0 and out[IP].src == EXT
    back = Ether(nat.send(E / IP(src=REMOTE, dst=EXT) / UDP(sport=53, dport=out[UDP].sport,
                                                           chksum=0) / Raw(b"a"), expect=0))
    assert back[UDP].chksum == 0 and back[IP].dst == "10.9.9.9" and back[UDP].dport == 5000
    # A checksummed datagram of the same flow keeps a valid non-zero checksum.
    full = Ether(nat.send(E / IP(src="10.9.9.9", dst=REMOTE) / UDP(sport=5000, dport=53) /
                          Raw(b"q"), expect=0))
    assert full[UDP].chksum != 0


@kernel
def test_snat_rewrites_behind_vlan_and_ip_options(nat):
    for l2 in (E / Dot1Q(vlan=10), E / Dot1AD(vlan=20) / Dot1Q(vlan=30)):
        out = Ether(nat.send(l2 / IP(src="192.168.3.4", dst=REMOTE, options=b"\x94\x04\x00\x00")
                             / TCP(sport=1111, dport=80) / Raw(b"x"), expect=0))
        assert out[IP].src == EXT and len(out[IP].options) == 1
    nat.counters()


@kernel
def test_distinct_flows_get_distinct_ports(nat):
    ports = set()
    for i in range(50):
        out = Ether(nat.send(out_tcp(sport=30000 + i % 5, src=f"10.0.{i}.1"), expect=0))
        ports.add(out[TCP].sport)
    assert len(ports) == 50
    assert nat.counters()["new_snat"] == 50


@kernel
def test_port_exhaustion_is_counted_and_dropped(hook):
    h = harness(hook, port_range=[40000, 40001])
    try:
        a = Ether(h.send(out_tcp(sport=1000), expect=0))
        b = Ether(h.send(out_tcp(sport=1001), expect=0))
        assert {a[TCP].sport, b[TCP].sport} == {40000, 40001}
        h.send(out_tcp(sport=1002), expect=Verdict.DROP)
        h.send(out_tcp(sport=1003, src="10.4.4.4"), expect=Verdict.DROP)
        # Mapped flows still work both ways.  Ports are claimed per (proto, remote
        # address, remote port): another remote, UDP or ICMP reuse the same two ports.
        assert Ether(h.send(out_tcp(sport=1000), expect=0))[TCP].sport == a[TCP].sport
        back = Ether(h.send(E / IP(src=REMOTE, dst=EXT) / TCP(sport=443, dport=b[TCP].sport),
                            expect=0))
        assert back[TCP].dport == 1001 and back[IP].dst == "10.1.2.3"
        for pkt in (out_tcp(sport=1002, dst=CLIENT),
                    E / IP(src="10.1.2.3", dst=REMOTE) / UDP(sport=7, dport=53),
                    E / IP(src="10.4.4.4", dst=REMOTE) / ICMP(type=8, id=9)):
            out = Ether(h.send(pkt, expect=0))
            assert out[IP].src == EXT
            assert (out[ICMP].id if ICMP in out else out[IP].payload.sport) in (40000, 40001)
        c = h.counters()
        assert c["port_exhausted"] == 2 and c["new_snat"] == 5
    finally:
        h.nf.close()


# ---- DNAT -----------------------------------------------------------------------------------

@kernel
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_dnat_inbound_and_reply(nat, proto):
    l4, fport, host, hport = ((TCP(sport=51000, dport=8080, flags="S"), 8080, "10.0.0.5", 80)
                              if proto == "tcp" else
                              (UDP(sport=51000, dport=5353), 5353, "192.168.1.9", 53))
    inb = Ether(nat.send(E / IP(src=CLIENT, dst=EXT) / l4 / Raw(b"req"), expect=0))
    assert inb[IP].dst == host and inb[IP].payload.dport == hport
    assert inb[IP].src == CLIENT and inb[IP].payload.sport == 51000
    rl4 = (TCP(sport=80, dport=51000, flags="SA") if proto == "tcp"
           else UDP(sport=53, dport=51000))
    rep = Ether(nat.send(E / IP(src=host, dst=CLIENT) / rl4 / Raw(b"resp"), expect=0))
    assert rep[IP].src == EXT and rep[IP].payload.sport == fport and rep[IP].dst == CLIENT
    c = nat.counters()
    assert (c["new_dnat"], c["xlate_dst"], c["xlate_src"], c["new_snat"]) == (1, 1, 1, 0)


@kernel
def test_forwards_change_at_run_time(nat):
    nf = nat.nf.nf
    try:
        nat.send(E / IP(src=CLIENT, dst=EXT) / TCP(sport=1, dport=8080), expect=0)
        nf.set_forwards(nat.nf.maps, [{"proto": "tcp", "port": 9090, "to": "10.0.0.6:22"}])
        assert len(nat.nf.maps["forwards"]) == 1
        # The model shares nf, so it follows the change: compare both.
        old = Ether(nat.send(E / IP(src=CLIENT, dst=EXT) / TCP(sport=1, dport=8080), expect=0))
        assert old[IP].dst == "10.0.0.5"            # an existing connection keeps its target
        new = E / IP(src=CLIENT, dst=EXT) / TCP(sport=2, dport=8080)
        assert nat.send(new, expect=0) == bytes(new)    # a new one finds no forward
        moved = Ether(nat.send(E / IP(src=CLIENT, dst=EXT) / TCP(sport=3, dport=9090), expect=0))
        assert moved[IP].dst == "10.0.0.6" and moved[TCP].dport == 22
        with pytest.raises(SpecError, match="inside port_range"):
            nf.set_forwards(nat.nf.maps, [{"proto": "tcp", "port": 20001, "to": "10.0.0.6:1"}])
        assert len(nat.nf.maps["forwards"]) == 1
        assert nat.counters()["new_dnat"] == 2
    finally:
        nf.set_forwards(nat.nf.maps, CFG["forwards"])


@kernel
def test_dnat_clash_with_an_outbound_flow_is_dropped(nat):
    # 10.0.0.5:80 opened CLIENT:51000 itself; a forward to the same reply tuple clashes.
    nat.send(E / IP(src="10.0.0.5", dst=CLIENT) / TCP(sport=80, dport=51000), expect=0)
    nat.send(E / IP(src=CLIENT, dst=EXT) / TCP(sport=51000, dport=8080), expect=Verdict.DROP)
    assert nat.counters()["dnat_clash"] == 1


# ---- what NAT leaves alone, and hostile packets ----------------------------------------------

UNTOUCHED = {
    "ipv6": E / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1, dport=2),
    "internal-to-internal": E / IP(src="10.1.1.1", dst="192.168.1.1") / TCP(sport=1, dport=2),
    "remote-to-remote": E / IP(src=REMOTE, dst=CLIENT) / UDP(sport=1, dport=2),
    "internal-to-external-ip": E / IP(src="10.1.1.1", dst=EXT) / TCP(sport=1, dport=8080),
    "unforwarded-port": E / IP(src=CLIENT, dst=EXT) / TCP(sport=1, dport=22),
    "no-mapping-reply": E / IP(src=REMOTE, dst=EXT) / UDP(sport=53, dport=20001),
    "inbound-echo-request": E / IP(src=REMOTE, dst=EXT) / ICMP(type=8, id=20001),
    "inbound-icmp-error-about-nothing": E / IP(src=REMOTE, dst=EXT) / ICMP(type=3, code=1) /
    IP(src=EXT, dst=REMOTE) / UDP(sport=1, dport=2),
    "inbound-gre-no-mapping": E / IP(src=REMOTE, dst=EXT, proto=47) / Raw(b"\x00" * 8),
    "arp": E / Raw(b"\x08\x06" + bytes(28)),
}


@kernel
@pytest.mark.parametrize("name", sorted(UNTOUCHED))
def test_untouched(nat, name):
    pkt = UNTOUCHED[name]
    data = bytes(pkt) if name != "arp" else bytes(E)[:12] + b"\x08\x06" + bytes(28)
    assert nat.send(data, expect=0) == data
    assert nat.counters()["untouched"] == 1


@kernel
def test_malformed_is_dropped(nat):
    tcp = bytes(out_tcp())
    cases = [tcp[:14 + 20 + 10],                                  # truncated TCP header
             tcp[:14] + bytes([0x4F]) + tcp[15:],                 # IHL past the end
             bytes(E / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP() / UDP())]
    for data in cases:
        nat.send(data, expect=Verdict.DROP)
    assert nat.counters()["malformed"] == len(cases)


# ---- the LRU table: eviction, repair, stale halves ----------------------------------------------

@kernel
def test_lru_evicts_instead_of_failing(hook):
    nf = Nat(CFG)
    with SmallTableNF(nf, hook, table_size=256) as loaded:
        n = 600
        for i in range(n):
            run = loaded.run(bytes(out_tcp(sport=10000 + i)))
            assert run.result == 0 and Ether(run.data)[IP].src == EXT
        c = counters(loaded.maps)
        assert c["new_snat"] == n and c["table_full"] == 0 and c["xlate_src"] == n
        assert len(loaded.maps["conns"]) <= 256
        # The most recent flow survived, both halves: its reply is translated back.
        last = Ether(loaded.run(bytes(out_tcp(sport=10000 + n - 1))).data)
        back = Ether(loaded.run(bytes(E / IP(src=REMOTE, dst=EXT) /
                                      TCP(sport=443, dport=last[TCP].sport))).data)
        assert back[IP].dst == "10.1.2.3" and back[TCP].dport == 10000 + n - 1


@kernel
@pytest.mark.parametrize("action", ["drop", "pass"])
def test_table_full_is_counted_and_acted_on(hook, action):
    """An LRU table never refuses an insert (it evicts), so the table_full path is
    driven with the same code on a plain hash table of 9 entries, which does:
    4 connections take 8 entries, the 5th finds one free entry — its reply half
    goes in, its own half fails, the reply half is taken back out."""
    from nfpipe.kernel.abi import MapType
    nf = Nat({**CFG, "table_full": action})
    h = Harness(SmallTableNF(nf, hook, table_size=9, map_type=MapType.HASH),
                nf.model(capacity=9))
    try:
        full = Verdict.DROP if action == "drop" else 0
        for i in range(4):
            h.send(out_tcp(sport=1000 + i), expect=0)
        for pkt in (out_tcp(sport=2000), E / IP(src=CLIENT, dst=EXT) / TCP(sport=5, dport=8080),
                    E / IP(src="10.3.3.3", dst=REMOTE) / ICMP(type=8, id=1)):
            data = bytes(pkt)
            assert h.send(data, expect=full) == data
        assert len(h.nf.maps["conns"]) == 8
        assert Ether(h.send(out_tcp(sport=1002), expect=0))[IP].src == EXT   # old flows live on
        c = h.counters()
        assert c["table_full"] == 3 and c["new_snat"] == 4
        assert c["untouched"] == (3 if action == "pass" else 0)
    finally:
        h.nf.close()


@kernel
def test_evicted_own_half_is_adopted(nat):
    out = Ether(nat.send(out_tcp(), expect=0))
    conns = nat.nf.maps["conns"]
    assert conns.delete(_conn_key("10.1.2.3", REMOTE, 40000, 443))   # as if the LRU evicted it
    assert nat.nf.run(bytes(out_tcp())).data == bytes(out)           # same port again
    c = counters(nat.nf.maps)
    assert c["repaired"] == 1 and c["new_snat"] == 1 and len(conns) == 2


def _conn_key(saddr, daddr, sport, dport, proto=6):
    be32 = lambda a: int.from_bytes(ipaddress.IPv4Address(a).packed, "little")
    be16 = lambda p: int.from_bytes(p.to_bytes(2, "big"), "little")
    return {"saddr": be32(saddr), "daddr": be32(daddr), "sport": be16(sport),
            "dport": be16(dport), "proto": proto, "pad": bytes(3)}


@kernel
def test_evicted_reply_half_is_repaired(nat):
    out = Ether(nat.send(out_tcp(), expect=0))
    conns = nat.nf.maps["conns"]
    assert conns.delete(_conn_key(REMOTE, EXT, 443, out[TCP].sport))   # as if the LRU evicted it
    again = nat.nf.run(bytes(out_tcp()))
    assert again.data == bytes(out)
    back = Ether(nat.nf.run(bytes(E / IP(src=REMOTE, dst=EXT) /
                                  TCP(sport=443, dport=out[TCP].sport))).data)
    assert back[IP].dst == "10.1.2.3" and back[TCP].dport == 40000
    assert counters(nat.nf.maps)["repaired"] == 1


@kernel
def test_stale_mapping_is_remade(nat):
    out = Ether(nat.send(out_tcp(), expect=0))
    port = out[TCP].sport
    conns = nat.nf.maps["conns"]
    key = _conn_key(REMOTE, EXT, 443, port)
    other = dict(conns[key])
    other["addr"] = int.from_bytes(ipaddress.IPv4Address("10.7.7.7").packed, "little")
    conns[key] = other                      # the reply tuple now belongs to another flow
    new = Ether(nat.nf.run(bytes(out_tcp())).data)
    assert new[IP].src == EXT and new[TCP].sport == (port - 20000 + 1) % 10000 + 20000
    assert_checksums(bytes(new))
    c = counters(nat.nf.maps)
    assert c["stale"] == 1 and c["new_snat"] == 2


# ---- two instances in one program; meta->pkt after translation ------------------------------

CHAIN_C = r"""
/* Two nat instances inlined into one program (as fused mode will do): a, then b;
 * b sees a's meta->pkt, which must hold the translated tuple. */
#include <nfpipe/nf.h>
#undef NFP_INSTANCE
#define NFP_INSTANCE natchain__a
#include "%(nat)s"
#undef NFP_INSTANCE
#define NFP_INSTANCE natchain__b
#include "%(nat)s"
#undef NFP_INSTANCE
#define NFP_INSTANCE natchain

struct nfp_pkt NFP_NAME(dump);

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	int r = natchain__a__process(ctx, meta);

	if (r == NFP_PORT(0))
		r = natchain__b__process(ctx, meta);
	NFP_NAME(dump) = meta->pkt;
	return r;
}
"""


@kernel
def test_two_instances_and_translated_meta(hook, tmp_path):
    from nfpipe.catalog.base import SourceNF
    src = tmp_path / "natchain.c"
    src.write_text(CHAIN_C % {"nat": Nat(CFG).source})
    nf = Nat(CFG)
    consts = {f"{i}__{k}": v for i in ("a", "b") for k, v in nf.constants().items()}
    with load_nf(SourceNF(src, consts), hook) as chain:
        for inst in ("a", "b"):
            nf.populate(NodeMaps(chain.obj.maps, f"natchain__{inst}"))
        model = nf.model()
        for pkt in (out_tcp(), E / IP(src=CLIENT, dst=EXT) / UDP(sport=9, dport=5353),
                    E / IP(src="10.3.3.3", dst=REMOTE) / ICMP(type=8, id=77)):
            data = bytes(pkt)
            run = chain.run(data)
            result, out = model.process(data)
            assert run.result == result == 0 and run.data == out != data
            meta = chain.obj.maps[".bss"][0]["natchain__dump"]
            o = Ether(out)
            assert meta["saddr"][0] == int.from_bytes(_ip(o[IP].src), "little")
            assert meta["daddr"][0] == int.from_bytes(_ip(o[IP].dst), "little")
            sport = o[ICMP].id if ICMP in o else o[IP].payload.sport
            assert socket.ntohs(meta["sport"]) == sport
            if ICMP not in o:
                assert socket.ntohs(meta["dport"]) == o[IP].payload.dport
        a = counters(NodeMaps(chain.obj.maps, "natchain__a"))
        b = counters(NodeMaps(chain.obj.maps, "natchain__b"))
        # b saw translated tuples: nothing for it to translate again.
        assert a["new_snat"] == 2 and a["new_dnat"] == 1
        assert b["untouched"] == 3 and b["new_snat"] == b["new_dnat"] == 0


# ---- stateful property test vs the model ----------------------------------------------------

def _ip(a: str) -> bytes:
    return ipaddress.IPv4Address(a).packed


def build(src: str, dst: str, proto: int, sport: int, dport: int, *, vlans=(), options=b"",
          payload=b"", icmp_type=8, udp_zero=False, frag=0, ttl=64, ip_id=0x1234) -> bytes:
    """A packet built with struct (fast), checksums right."""
    s, d = _ip(src), _ip(dst)
    if proto == 6:
        hdr = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x18, 512, 0, 0)
        l4 = hdr + payload
        ph = s + d + struct.pack("!BBH", 0, 6, len(l4))
        c = checksum(ph + l4)
        l4 = l4[:16] + struct.pack("!H", c) + l4[18:]
    elif proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        if not udp_zero:
            c = checksum(s + d + struct.pack("!BBH", 0, 17, len(l4)) + l4) or 0xFFFF
            l4 = l4[:6] + struct.pack("!H", c) + l4[8:]
    elif proto == 1:
        l4 = struct.pack("!BBHHH", icmp_type, 0, 0, sport, 1) + payload
        l4 = l4[:2] + struct.pack("!H", checksum(l4)) + l4[4:]
    else:
        l4 = payload
    ihl = 5 + len(options) // 4
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(l4), ip_id, frag, ttl,
                     proto, 0, s, d) + options
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    l2 = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"
    for i, v in enumerate(vlans):
        l2 += struct.pack("!HH", 0x88A8 if i == 0 and len(vlans) == 2 else 0x8100, v)
    return l2 + b"\x08\x00" + ip + l4


def build_icmp_error(src: str, dst: str, inner: bytes, *, icmp_type=3, code=3, rest=0,
                     ttl=64, vlans=()) -> bytes:
    """An ICMP error from *src* to *dst* quoting *inner* (an IP packet, maybe cut short),
    checksums right; *rest* is the header's second word (e.g. the next-hop MTU)."""
    icmp = struct.pack("!BBHI", icmp_type, code, 0, rest) + inner
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    s, d = _ip(src), _ip(dst)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0x4321, 0, ttl, 1, 0, s, d)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    l2 = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"
    for v in vlans:
        l2 += struct.pack("!HH", 0x8100, v)
    return l2 + b"\x08\x00" + ip + icmp


def ip_part(frame: bytes) -> bytes:
    """The IP packet of an Ethernet frame (after any VLAN tags)."""
    off = 12
    while frame[off:off + 2] in (b"\x81\x00", b"\x88\xa8"):
        off += 4
    return frame[off + 2:]


def checksums_ok(data: bytes) -> bool:
    """Full recomputation of the IPv4 and TCP/UDP/ICMP checksums of a struct-built packet."""
    off = 12
    while data[off:off + 2] in (b"\x81\x00", b"\x88\xa8"):
        off += 4
    l3 = off + 2
    ihl = (data[l3] & 0xF) * 4
    if checksum(data[l3:l3 + ihl]) != 0:
        return False
    proto, s, d = data[l3 + 9], data[l3 + 12:l3 + 16], data[l3 + 16:l3 + 20]
    if struct.unpack("!H", data[l3 + 6:l3 + 8])[0] & 0x1FFF:
        return True                # a later fragment: no L4 header to check
    l4 = data[l3 + ihl:]
    if proto == 1:
        return checksum(l4) == 0
    if proto == 17 and l4[6:8] == b"\0\0":
        return True
    if proto in (6, 17):
        return checksum(s + d + struct.pack("!BBH", 0, proto, len(l4)) + l4) == 0
    return True


INTERNAL_HOSTS = [f"10.0.{i}.{j}" for i in range(3) for j in range(1, 6)] + \
    ["192.168.1.9", "10.0.0.5"]
REMOTES = [f"198.51.100.{i}" for i in range(1, 8)] + ["192.0.2.44", "8.8.8.8"]


def random_traffic(rng: random.Random, model: NatModel, n: int):
    """A stateful mix: new and repeated outbound flows, replies to the mappings the
    model holds, DNAT flows and their replies, unrelated, fragmented, malformed."""
    flows: list[tuple] = []               # outbound (src, dst, proto, sport, dport) seen
    for _ in range(n):
        kw = {}
        r = rng.random()
        if rng.random() < 0.1:
            kw["vlans"] = rng.choice([(5,), (6, 7)])
        if rng.random() < 0.1:
            kw["options"] = b"\x01\x01\x01\x00"
        kw["payload"] = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 24)))
        if rng.random() < 0.05:
            kw["ttl"] = rng.choice([0, 1])
        if r < 0.30 or not flows:                               # a new outbound flow
            proto = rng.choice([6, 17, 1])
            f = (rng.choice(INTERNAL_HOSTS), rng.choice(REMOTES), proto,
                 rng.randrange(1, 65536), rng.choice([53, 80, 443, rng.randrange(1, 65536)]))
            flows.append(f)
        elif r < 0.45:                                          # an existing outbound flow
            f = rng.choice(flows)
        elif r < 0.70:                                          # a reply to a mapping
            if not model.table:
                continue
            key, (d, addr, port) = rng.choice(list(model.table.items()))
            proto, s, dd, sp, dp = key
            if proto == 1:
                kw["icmp_type"] = 0 if dd == model.ext else 8
            if proto == 17 and rng.random() < 0.2:
                kw["udp_zero"] = True
            yield build(str(ipaddress.IPv4Address(s)), str(ipaddress.IPv4Address(dd)), proto,
                        sp, dp, **kw)
            continue
        elif r < 0.76:                                          # an ICMP error
            if model.table and rng.random() < 0.8:              # ... about a mapping
                key = rng.choice(list(model.table))
                proto, s, dd, sp, dp = key
                if proto == 1:
                    sp = dp = key[3]
                inner_kw = {"icmp_type": 8 if model.table[key][0] == N.REWRITE_DST else 0}
                inner = ip_part(build(str(ipaddress.IPv4Address(dd)),
                                      str(ipaddress.IPv4Address(s)), proto, dp, sp,
                                      payload=kw["payload"], **inner_kw))
                outer = (str(ipaddress.IPv4Address(s)), str(ipaddress.IPv4Address(dd)))
                if dd == model.ext and rng.random() < 0.5:
                    outer = (rng.choice(REMOTES), outer[1])          # a router on the way
            else:                                               # ... about nothing known
                inner = ip_part(build(rng.choice(REMOTES), EXT, rng.choice([6, 17]), 1, 2))
                outer = rng.choice([(rng.choice(REMOTES), EXT),
                                    (rng.choice(INTERNAL_HOSTS), rng.choice(REMOTES))])
            cut = rng.choice([len(inner), 28, 20 + 18, 20 + 4])
            yield build_icmp_error(*outer, inner[:cut], icmp_type=rng.choice([3, 11, 12, 4]),
                                   code=rng.choice([0, 3, 4]), ttl=kw.get("ttl", 64),
                                   vlans=kw.get("vlans", ()))
            continue
        elif r < 0.82:                                          # DNAT, new or known client
            proto, port = rng.choice([(6, 8080), (17, 5353), (6, 22), (17, 8080)])
            yield build(rng.choice(REMOTES), EXT, proto, rng.randrange(1000, 1100), port, **kw)
            continue
        elif r < 0.90:                                          # unrelated traffic
            src, dst = rng.choice([(rng.choice(REMOTES), rng.choice(REMOTES)),
                                   (rng.choice(INTERNAL_HOSTS), rng.choice(INTERNAL_HOSTS)),
                                   (rng.choice(INTERNAL_HOSTS), EXT),
                                   (rng.choice(INTERNAL_HOSTS), rng.choice(REMOTES))])
            proto = rng.choice([6, 17, 1, 47])
            yield build(src, dst, proto, rng.randrange(65536), rng.randrange(65536),
                        icmp_type=rng.choice([0, 8, 13]), **kw)
            continue
        elif r < 0.86:                                          # protocols without ports
            proto = rng.choice([47, 50, 132, 4])
            host, remote = rng.choice(INTERNAL_HOSTS[:4]), rng.choice(REMOTES[:3])
            if rng.random() < 0.5:
                yield build(host, remote, proto, 0, 0, **kw)
            else:
                yield build(remote, EXT, proto, 0, 0, **kw)
            continue
        else:                                                   # fragments, malformed
            f = rng.choice(flows)
            data = build(f[0], f[1], f[2], f[3], f[4], **kw)
            if rng.random() < 0.5:
                data = build(f[0], f[1], f[2], f[3], f[4], frag=rng.choice([0x2000, 0x0010]),
                             ip_id=rng.choice([1, 2, 3]), **kw)
            else:
                data = data[:rng.randrange(14 + 20, len(data))]
            yield data
            continue
        src, dst, proto, sport, dport = f
        if proto == 17 and rng.random() < 0.2:
            kw["udp_zero"] = True
        if proto == 1:
            dport = sport
        yield build(src, dst, proto, sport, dport, **kw)


@kernel
@pytest.mark.parametrize("port_range", ["20000-29999", "30000-30007"])
def test_random_stateful_traffic_matches_the_model(hook, port_range):
    """>= 10k packets per hook; the narrow range makes probing and exhaustion happen."""
    h = harness(hook, port_range=port_range)
    rng = random.Random(f"nat-{hook}-{port_range}")
    n = 6000
    sampled = 0
    try:
        for i, data in enumerate(random_traffic(rng, h.model, n)):
            run = h.nf.run(data)
            result, out = h.model.process(data)
            assert run.result == int(result), f"packet {i}: {data.hex()}"
            assert run.retval == h.nf.expected_retval(run.result)
            assert run.data == out, f"packet {i}: {data.hex()}"
            if run.result >= 0 and run.data != data:
                # Incremental updates keep a right checksum right (and a wrong one,
                # as in a truncated packet, wrong).
                assert checksums_ok(run.data) == checksums_ok(data), f"packet {i}"
                if i % 50 == 0 and checksums_ok(data):
                    assert_checksums(run.data)
                    sampled += 1
        c = h.counters()
        assert sampled > 10
        assert c["new_snat"] > 100 and c["xlate_dst"] > 100 and c["new_dnat"] > 10
        assert c["fragment"] and c["malformed"] and c["untouched"]
        assert c["icmp_error"] > 20 and c["icmp_unknown"] and c["ttl"]
        if port_range == "30000-30007":
            assert c["port_exhausted"] > 0
    finally:
        h.nf.close()


# ---- config (no kernel) -----------------------------------------------------------------------

def test_config_defaults_and_constants():
    nf = Nat({"external_ip": EXT})
    k = nf.constants()
    assert k["external_ip"] == 0xCB007101 and k["port_lo"] == 20000 and k["port_count"] == 10000
    assert k["n_internal"] == 3 and k["internal_net"][:3] == [0x0A000000, 0xAC100000, 0xC0A80000]
    assert k["internal_mask"][1] == 0xFFF00000 and len(k["internal_net"]) == N.MAX_INTERNAL
    assert Nat({**CFG, "port_range": [1024, 1024]}).port_count == 1
    assert Nat({**CFG, "table_full": "pass"}).constants()["table_full_pass"] == 1


@pytest.mark.parametrize("override, match", [
    ({"external_ip": "300.1.1.1"}, "external_ip: expected an IPv4 address"),
    ({"external_ip": "10.9.9.9"}, "external_ip: 10.9.9.9 lies inside an internal prefix"),
    ({"internal": ["10.0.0.1/8"]}, r"internal: '10.0.0.1/8' is not an IPv4 prefix"),
    ({"internal": []}, "internal: expected a list"),
    ({"internal": [f"10.{i}.0.0/16" for i in range(17)]}, "at most 16"),
    ({"port_range": "20000"}, "port_range: expected 'LO-HI'"),
    ({"port_range": "0-10"}, "port_range: expected a port number 1-65535"),
    ({"port_range": [3000, 2000]}, "low port 3000 is above the high port 2000"),
    ({"port_range": [1, 70000]}, "port_range: expected a port number"),
    ({"table_full": "explode"}, "table_full: expected 'drop' or 'pass'"),
    ({"timeouts": {"tcp": 300}}, "timeouts: not supported .* LRU"),
    ({"connections": 0}, "connections: expected how many connections"),
    ({"connections": (1 << 22) + 1}, "connections: .* 1 to 4194304"),
    ({"connections": "many"}, "connections: expected"),
    ({"bogus": 1}, "unknown config key"),
    ({"forwards": {"proto": "tcp"}}, "forwards: expected a list"),
    ({"forwards": [{"proto": "sctp", "port": 1, "to": "10.0.0.1:1"}]}, r"forwards\[0\].proto"),
    ({"forwards": [{"proto": "tcp", "port": 0, "to": "10.0.0.1:1"}]}, r"forwards\[0\].port"),
    ({"forwards": [{"proto": "tcp", "port": 25000, "to": "10.0.0.1:1"}]}, "inside port_range"),
    ({"forwards": [{"proto": "tcp", "port": 80, "to": "10.0.0.1"}]}, r"forwards\[0\].to: expected"),
    ({"forwards": [{"proto": "tcp", "port": 80, "to": "10.0.0.1:99999"}]}, r"forwards\[0\].to"),
    ({"forwards": [{"proto": "tcp", "port": 80, "to": "8.8.8.8:80"}]}, "not inside an internal"),
    ({"forwards": [{"proto": "tcp", "port": 80}]}, r"forwards\[0\].to: required"),
    ({"forwards": [{"proto": "tcp", "port": 80, "to": "10.0.0.1:80", "x": 1}]}, "unknown key"),
    ({"forwards": [{"proto": "tcp", "port": 80, "to": "10.0.0.1:80"},
                   {"proto": "TCP", "port": 80, "to": "10.0.0.2:80"}]}, r"forwards\[1\]: a second"),
])
def test_config_errors(override, match):
    with pytest.raises(SpecError, match=match):
        Nat({**CFG, **override})


@pytest.mark.kernel
def test_the_connection_table_is_sized_by_connections():
    """Two entries per connection: a table of 3 connections takes 6 entries and then
    evicts (LRU), whatever NFP_NAT_CONNS says."""
    nf = Nat({**CFG, "connections": 3})
    assert nf.map_sizes() == {"conns": 6}
    with load_nf(nf, "xdp") as loaded:
        assert loaded.maps["conns"].max_entries == 6
        for sport in range(5000, 5005):
            pkt = bytes(Ether() / IP(src="10.1.2.3", dst="198.51.100.7") /
                        UDP(sport=sport, dport=53))
            assert loaded.run(pkt).port == 0            # translated, sent on "out"
        assert len(loaded.maps["conns"]) <= 6          # 5 connections made: some evicted


def test_missing_external_ip():
    with pytest.raises(SpecError, match="external_ip: required"):
        Nat({"internal": ["10.0.0.0/8"]})


def test_model_flow_hash_is_stable():
    # Pinned values: the C flow_hash must compute the same (the kernel tests check it).
    assert N.flow_hash(6, 0x0A010203, 0xC6336407, 40000, 443) == \
        N.flow_hash(6, 0x0A010203, 0xC6336407, 40000, 443)
    assert N.flow_hash(6, 1, 2, 3, 4) != N.flow_hash(17, 1, 2, 3, 4)
