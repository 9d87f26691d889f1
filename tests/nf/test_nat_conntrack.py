"""nat against what Linux's conntrack NAT does where nat.c used to stop short: ICMP
errors about translated flows (both directions, outer and embedded header), protocols
without ports (GRE, ESP, SCTP, AH), fragmented datagrams, and packets whose TTL ends
at this hop.  Each case runs in the kernel (XDP and TC) and in NatModel side by side,
and is checked on its own terms: the embedded header is exactly the packet the inside
host sent, every checksum recomputes, a datagram reassembles."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP, defragment, fragment
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from nfpipe.catalog.csum import checksum
from nfpipe.catalog.nat import Nat, NatModel, counters
from nfpipe.nfabi import Verdict
from nfpipe.testing import load_nf
from tests.nf.test_nat import CFG, EXT, REMOTE, build, build_icmp_error, ip_part

pytestmark = pytest.mark.kernel
HOST, HOST2, SERVER = "10.1.2.3", "10.1.2.4", "10.0.0.5"      # SERVER: CFG's tcp 8080
ROUTER, CLIENT = "198.51.100.99", "192.0.2.44"
DROP = int(Verdict.DROP)


class Nat2:
    """A freshly loaded NAT and its model; send() runs both and insists they agree."""

    def __init__(self, hook: str, egress: bool = False, **overrides):
        self.nf = Nat({**CFG, **overrides})
        self.loaded = load_nf(self.nf, hook, egress=egress)
        self.model = NatModel(self.nf, egress=egress)

    def send(self, data: bytes, expect: int | None = None) -> bytes:
        run = self.loaded.run(data)
        result, out = self.model.process(data)
        assert run.result == int(result), (run.result, result, data.hex())
        if run.result >= 0:
            assert run.data == out, data.hex()
        if expect is not None:
            assert run.result == expect
        return run.data

    def counters(self) -> dict[str, int]:
        got = counters(self.loaded.maps)
        assert got == self.model.counters
        return got

    def close(self) -> None:
        self.loaded.close()


@pytest.fixture(params=["xdp", "tc"])
def nat(request):
    n = Nat2(request.param)
    yield n
    n.close()


def fields(frame: bytes) -> dict:
    ip = ip_part(frame)
    ihl = (ip[0] & 0xF) * 4
    return {"src": ".".join(map(str, ip[12:16])), "dst": ".".join(map(str, ip[16:20])),
            "proto": ip[9], "l4": ip[ihl:], "ip": ip}


def embedded(frame: bytes) -> bytes:
    """The packet an ICMP error quotes."""
    return fields(frame)["l4"][8:]


def assert_error_checksums(frame: bytes, *, full_inner: bool) -> None:
    """Outer IPv4 header, the ICMP message, the quoted IPv4 header, and the quoted
    UDP/TCP checksum over its pseudo-header when the whole datagram is quoted."""
    f = fields(frame)
    ihl = (f["ip"][0] & 0xF) * 4
    assert checksum(f["ip"][:ihl]) == 0, "outer IP checksum"
    assert checksum(f["l4"]) == 0, "ICMP checksum"
    inner = embedded(frame)
    iihl = (inner[0] & 0xF) * 4
    assert checksum(inner[:iihl]) == 0, "quoted IP checksum"
    if full_inner and inner[9] in (6, 17):
        l4 = inner[iihl:]
        ph = inner[12:20] + struct.pack("!BBH", 0, inner[9], len(l4))
        assert checksum(ph + l4) == 0, "quoted L4 checksum"


def mapped_port(frame: bytes) -> int:
    return struct.unpack("!H", fields(frame)["l4"][:2])[0]


# ---- ICMP errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("icmp_type,code,rest,cut", [
    (3, 3, 0, None),          # port unreachable from the server, the whole datagram quoted
    (3, 4, 1400, None),       # fragmentation needed (path MTU): the MTU word stays
    (11, 0, 0, 28),           # time exceeded from a router, 8 bytes of UDP quoted
])
def test_inbound_error_about_a_snat_flow_reaches_the_inside_host(nat, icmp_type, code, rest,
                                                                 cut):
    sent = build(HOST, REMOTE, 17, 40000, 53, payload=b"query")
    out = nat.send(sent, expect=0)
    port = mapped_port(out)
    quoted = ip_part(out)[:cut] if cut else ip_part(out)
    src = REMOTE if icmp_type == 3 else ROUTER
    err = build_icmp_error(src, EXT, quoted, icmp_type=icmp_type, code=code, rest=rest)
    back = nat.send(err, expect=0)
    f = fields(back)
    assert (f["src"], f["dst"]) == (src, HOST)
    assert f["l4"][:2] == bytes([icmp_type, code]) and f["l4"][4:8] == struct.pack("!I", rest)
    # the quote is again exactly what the inside host sent (its socket matches it)
    assert embedded(back) == (ip_part(sent)[:cut] if cut else ip_part(sent))
    assert port != 40000
    assert_error_checksums(back, full_inner=cut is None)
    assert nat.counters()["icmp_error"] == 1


@pytest.mark.parametrize("quote", [20 + 8, 20 + 20 + 5])
def test_error_about_a_tcp_flow_with_and_without_its_checksum_quoted(nat, quote):
    sent = build(HOST, REMOTE, 6, 40001, 443, payload=b"hello")
    out = nat.send(sent, expect=0)
    err = build_icmp_error(ROUTER, EXT, ip_part(out)[:quote], icmp_type=11)
    back = nat.send(err, expect=0)
    assert fields(back)["dst"] == HOST and embedded(back) == ip_part(sent)[:quote]
    assert_error_checksums(back, full_inner=False)


def test_error_about_an_echo_request_restores_its_id(nat):
    sent = build(HOST, REMOTE, 1, 7, 7, payload=b"ping")
    out = nat.send(sent, expect=0)
    err = build_icmp_error(ROUTER, EXT, ip_part(out)[:28], icmp_type=11)
    back = nat.send(err, expect=0)
    assert fields(back)["dst"] == HOST and embedded(back) == ip_part(sent)[:28]
    assert_error_checksums(back, full_inner=False)


def test_outbound_error_from_a_dnat_target_leaves_with_the_external_address(nat):
    """An outside client reaches 203.0.113.1:8080, forwarded to 10.0.0.5:80, which
    answers port unreachable: the error leaves as from 203.0.113.1, quoting the packet
    the client sent (its own socket matches it), not the inside address."""
    sent = build(CLIENT, EXT, 6, 1000, 8080, payload=b"GET")
    inside = nat.send(sent, expect=0)
    assert fields(inside)["dst"] == SERVER
    err = build_icmp_error(SERVER, CLIENT, ip_part(inside))
    out = nat.send(err, expect=0)
    f = fields(out)
    assert (f["src"], f["dst"]) == (EXT, CLIENT)
    assert embedded(out) == ip_part(sent)
    assert_error_checksums(out, full_inner=True)


def test_inside_host_error_about_a_reply_leaves_translated(nat):
    """The inside host rejects a reply of its own SNAT flow (its port closed): the
    error goes out from external_ip, quoting the reply as the server sent it."""
    out = nat.send(build(HOST, REMOTE, 17, 40002, 53), expect=0)
    port = mapped_port(out)
    reply = build(REMOTE, EXT, 17, 53, port, payload=b"answer")
    inside = nat.send(reply, expect=0)
    err = build_icmp_error(HOST, REMOTE, ip_part(inside))
    gone = nat.send(err, expect=0)
    assert fields(gone)["src"] == EXT and embedded(gone) == ip_part(reply)
    assert_error_checksums(gone, full_inner=True)


def test_errors_about_no_known_flow(nat):
    """Going out it would carry an inside address in the outer and the quoted header:
    dropped.  Coming in it is for this host: left alone.  An error about an error is
    never ours."""
    about = ip_part(build(REMOTE, HOST, 17, 53, 4444))
    nat.send(build_icmp_error(HOST, REMOTE, about), expect=DROP)
    inbound = build_icmp_error(REMOTE, EXT, ip_part(build(EXT, REMOTE, 17, 1, 2)))
    assert nat.send(inbound, expect=0) == inbound
    out = nat.send(build(HOST, REMOTE, 17, 40003, 53), expect=0)
    nested = build_icmp_error(REMOTE, EXT, ip_part(build_icmp_error(EXT, REMOTE,
                                                                    ip_part(out)))[:28])
    assert nat.send(nested, expect=0) == nested
    assert nat.counters()["icmp_unknown"] == 3


# ---- protocols without ports ---------------------------------------------------------------------

@pytest.mark.parametrize("proto,payload", [
    (47, b"\x00\x00\x08\x00" + bytes(20)),                        # GRE
    (50, struct.pack("!II", 0x1234, 1) + bytes(16)),              # ESP
    (132, struct.pack("!HHII", 5000, 6000, 7, 0xDEADBEEF)),       # SCTP: CRC32c, no pseudo
    (4, bytes(ip_part(build("10.9.9.9", "10.8.8.8", 17, 1, 2)))),  # IP in IP
])
def test_other_protocols_are_translated_by_address(nat, proto, payload):
    sent = build(HOST, REMOTE, proto, 0, 0, payload=payload)
    out = nat.send(sent, expect=0)
    f = fields(out)
    assert (f["src"], f["dst"], f["proto"], f["l4"]) == (EXT, REMOTE, proto, payload)
    assert checksum(f["ip"][:20]) == 0
    back = nat.send(build(REMOTE, EXT, proto, 0, 0, payload=payload), expect=0)
    assert fields(back)["dst"] == HOST and fields(back)["l4"] == payload
    # a second inside host to the same remote with the same protocol: no port to tell
    # the two apart on the way back, so it is dropped (as conntrack's clash is)
    nat.send(build(HOST2, REMOTE, proto, 0, 0, payload=payload), expect=DROP)
    nat.send(build(HOST2, "198.51.100.8", proto, 0, 0, payload=payload), expect=0)
    c = nat.counters()
    assert c["other_clash"] == 1 and c["new_snat"] == 2


def test_tcp_under_ah_and_other_icmp_get_the_address_only(nat):
    ah = struct.pack("!BBHII", 6, 4, 0, 0x99, 1) + bytes(12)
    tcp = bytes(TCP(sport=1234, dport=22, flags="S"))
    out = nat.send(build(HOST, REMOTE, 51, 0, 0, payload=ah + tcp), expect=0)
    assert fields(out)["src"] == EXT and fields(out)["l4"] == ah + tcp    # ICV, ports as sent
    stamp = build(HOST, REMOTE, 1, 0, 0, icmp_type=13, payload=bytes(12))
    out = nat.send(stamp, expect=0)
    assert fields(out)["src"] == EXT and fields(out)["l4"] == fields(stamp)["l4"]
    reply = nat.send(build(HOST, "198.51.100.9", 1, 5, 5, icmp_type=0), expect=0)
    assert fields(reply)["src"] == EXT


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_other_protocols_drop_policy(hook):
    n = Nat2(hook, other_protocols="drop")
    try:
        n.send(build(HOST, REMOTE, 47, 0, 0, payload=bytes(8)), expect=DROP)
        assert fields(n.send(build(HOST, REMOTE, 6, 1, 2), expect=0))["src"] == EXT
        assert n.counters()["other_dropped"] == 1
    finally:
        n.close()


# ---- fragments ----------------------------------------------------------------------------------

def _udp_datagram(src, dst, sport, dport, size, ip_id):
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / \
        IP(src=src, dst=dst, id=ip_id) / UDP(sport=sport, dport=dport) / Raw(bytes(range(256)) *
                                                                               (size // 256))


def test_fragmented_datagrams_are_translated_both_ways(nat):
    """The first fragment's translation is kept by (addresses, protocol, IP id) and
    applied to the others; the datagram reassembles with a right UDP checksum."""
    frags = fragment(_udp_datagram(HOST, REMOTE, 40004, 4500, 1024, 77), fragsize=256)
    assert len(frags) > 3
    out = [Ether(nat.send(bytes(f), expect=0)) for f in frags]
    assert {p[IP].src for p in out} == {EXT}
    whole = defragment([p[IP] for p in out])[0]
    port = whole[UDP].sport
    assert port != 40004 and whole[UDP].dport == 4500 and len(whole[Raw].load) == 1024
    raw = bytes(whole)
    assert checksum(raw[12:20] + struct.pack("!BBH", 0, 17, len(raw) - 20) + raw[20:]) == 0
    reply = fragment(_udp_datagram(REMOTE, EXT, 4500, port, 1024, 78), fragsize=256)
    back = [Ether(nat.send(bytes(f), expect=0)) for f in reply]
    assert {p[IP].dst for p in back} == {HOST}
    whole = defragment([p[IP] for p in back])[0]
    assert (whole[UDP].sport, whole[UDP].dport) == (4500, 40004)
    raw = bytes(whole)
    assert checksum(raw[12:20] + struct.pack("!BBH", 0, 17, len(raw) - 20) + raw[20:]) == 0


def test_a_later_fragment_before_its_first(nat):
    """Going out it would leak the inside address: dropped.  Coming in to external_ip
    with nothing known it is this host's: left alone."""
    frags = fragment(_udp_datagram(HOST, REMOTE, 40005, 4500, 1024, 79), fragsize=256)
    nat.send(bytes(frags[1]), expect=DROP)
    nat.send(bytes(frags[0]), expect=0)
    assert Ether(nat.send(bytes(frags[1]), expect=0))[IP].src == EXT
    stray = fragment(_udp_datagram(REMOTE, EXT, 53, 9999, 1024, 80), fragsize=256)[2]
    assert nat.send(bytes(stray), expect=0) == bytes(stray)
    assert nat.counters()["fragment"] == 1


# ---- TTL ------------------------------------------------------------------------------------------

def test_ttl_ending_here_makes_no_state(nat):
    """Arriving with TTL 1 a packet is not forwarded: outbound it goes to the stack
    untouched (which answers time exceeded to the inside host, so traceroute works),
    with no mapping made; inbound it is dropped, before any DNAT state."""
    probe = build(HOST, REMOTE, 17, 40006, 33434, ttl=1)
    assert nat.send(probe, expect=0) == probe
    assert len(list(nat.loaded.maps["conns"].keys())) == 0
    nat.send(build(CLIENT, EXT, 6, 1000, 8080, ttl=1), expect=DROP)
    assert len(list(nat.loaded.maps["conns"].keys())) == 0
    out = nat.send(build(HOST, REMOTE, 17, 40006, 33434, ttl=2), expect=0)
    nat.send(build(REMOTE, EXT, 17, 33434, mapped_port(out), ttl=1), expect=DROP)
    c = nat.counters()
    assert c["ttl"] == 3 and c["new_snat"] == 1 and c["new_dnat"] == 0


def test_at_tc_egress_ttl_one_is_translated():
    """After routing (tc-egress) the stack has decremented TTL already: 1 is valid."""
    n = Nat2("tc", egress=True)
    try:
        out = n.send(build(HOST, REMOTE, 17, 40007, 53, ttl=1), expect=0)
        assert fields(out)["src"] == EXT and n.counters()["ttl"] == 0
    finally:
        n.close()
