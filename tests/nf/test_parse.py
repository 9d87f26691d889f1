"""nfp_parse in the kernel against its Python model, on hostile packets, in XDP and TC."""
from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from nfpipe.catalog import parse as P
from nfpipe.catalog.base import SourceNF
from nfpipe.errors import KernelError
from nfpipe.nfabi import Verdict
from nfpipe.testing import load_nf

pytestmark = pytest.mark.kernel

SRC = Path(__file__).parent.parent / "bpf" / "nf_parse_dump.c"
E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
V4 = IP(src="192.0.2.1", dst="198.51.100.2")
V6 = IPv6(src="2001:db8::1", dst="2001:db8::2")


def hostile_packets() -> dict[str, bytes]:
    big = V4 / UDP(sport=1, dport=53) / Raw(b"x" * 64)
    frags = fragment(E / IP(src="192.0.2.1", dst="198.51.100.2", id=7) / UDP(dport=53) /
                     Raw(b"y" * 200), fragsize=64)
    v6frag = E / V6 / IPv6ExtHdrFragment(offset=0, m=1, id=5) / UDP(dport=53) / Raw(b"z" * 16)
    v6frag_later = E / V6 / IPv6ExtHdrFragment(offset=8, m=0, id=5, nh=17) / Raw(b"z" * 16)
    long_chain = V6
    for _ in range(P.MAX_IPV6_EXT + 1):
        long_chain = long_chain / IPv6ExtHdrDestOpt()
    pkts = {
        "tcp-syn": E / V4 / TCP(sport=1234, dport=80, flags="S"),
        "udp": E / big,
        "icmp-echo": E / V4 / ICMP(type=8, id=0x4242, seq=1),
        "ipv4-options": E / IP(src="192.0.2.1", dst="198.51.100.2",
                               options=b"\x94\x04\x00\x00" * 2) / TCP(dport=443),
        "vlan": E / Dot1Q(vlan=100) / V4 / TCP(dport=80),
        "qinq": E / Dot1AD(vlan=200) / Dot1Q(vlan=100) / V4 / UDP(dport=53),
        "three-tags": E / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / V4 / UDP(dport=53),
        "frag-first": frags[0],
        "frag-later": frags[1],
        "ipv6-tcp": E / V6 / TCP(dport=443, flags="SA"),
        "ipv6-ext-chain": E / V6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() /
        IPv6ExtHdrDestOpt() / UDP(dport=53),
        "ipv6-frag-first": v6frag,
        "ipv6-frag-later": v6frag_later,
        "ipv6-chain-too-long": E / long_chain / UDP(dport=53),
        "icmpv6-echo": E / V6 / ICMPv6EchoRequest(id=77),
        "arp-like": E / Raw(b"\x08\x06" + bytes(28)),
    }
    out = {k: bytes(v) for k, v in pkts.items()}
    out["arp-like"] = bytes(E)[:12] + b"\x08\x06" + bytes(28)
    tcp = bytes(E / V4 / TCP(dport=80))
    out["truncated-tcp"] = tcp[:14 + 20 + 10]
    out["truncated-ipv4"] = tcp[:14 + 12]
    out["truncated-vlan"] = bytes(E / Dot1Q(vlan=5) / V4 / TCP())[:16]
    out["ihl-too-small"] = tcp[:14] + bytes([0x44]) + tcp[15:]
    out["ihl-past-end"] = tcp[:14] + bytes([0x4F]) + tcp[15:14 + 40]
    out["tot-len-below-ihl"] = tcp[:16] + b"\x00\x10" + tcp[18:]
    out["tcp-doff-too-small"] = tcp[:14 + 20 + 12] + bytes([0x20]) + tcp[14 + 20 + 13:]
    out["wrong-ip-version"] = tcp[:14] + bytes([0x65]) + tcp[15:]
    out["truncated-ipv6-ext"] = bytes(E / V6 / IPv6ExtHdrHopByHop() / UDP())[:14 + 40 + 4]
    out.update(edge_packets())
    return out


def ah(nh: int, icv: int = 12) -> bytes:
    """An AH header (RFC 4302) before protocol *nh*, with an *icv*-byte ICV: its length
    field is (12 + icv) / 4 - 2, so 12 + icv must be a multiple of 8 for IPv6."""
    return struct.pack("!BBHII", nh, (12 + icv) // 4 - 2, 0, 0x1234, 1) + bytes(range(icv))


def edge_packets() -> dict[str, bytes]:
    """Packets at the parser's edges: the ones a filter must not misjudge."""
    syn = bytes(TCP(sport=4000, dport=22, flags="S"))
    out = {
        # AH: skipped (its length counts 4-byte words plus 2) to the protocol it protects
        "ipv4-ah-tcp": E / IP(src="192.0.2.1", dst="198.51.100.2", proto=51) /
        Raw(ah(6) + syn),
        "ipv6-ah-tcp": E / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=51) /
        Raw(ah(6, icv=20) + syn),
        "ipv6-hbh-ah-udp": E / IPv6(src="2001:db8::1", dst="2001:db8::2") /
        IPv6ExtHdrHopByHop(nh=51) / Raw(ah(17, icv=4) + bytes(UDP(sport=5, dport=53))),
        "ipv4-ah-in-ah": E / IP(proto=51) / Raw(ah(51) + ah(6) + syn),
        # first fragments too short for their L4 header (RFC 1858, RFC 7112)
        "ipv4-frag-first-short": E / IP(flags="MF", proto=6) / Raw(syn[:8]),
        "ipv6-frag-first-short": E / V6 / IPv6ExtHdrFragment(m=1, nh=6) / Raw(syn[:8]),
        "ipv6-frag-first-chain-cut": E / V6 / IPv6ExtHdrFragment(m=1, nh=60) / Raw(bytes(8)),
        # a later IPv6 fragment: what follows the fragment header is payload
        "ipv6-frag-later-dstopts": E / V6 / IPv6ExtHdrFragment(offset=8, nh=60) / Raw(bytes(16)),
        # bytes after the datagram (Ethernet padding) are never read as headers
        "ipv6-payload-shorter-than-udp": None,
        "ipv6-payload-len-past-frame": None,
        "ipv6-jumbo-length": None,
        "ipv6-zero-length-no-hbh": None,
        "tot-len-past-frame": None,
        "frag-first-padding-looks-like-tcp": None,
        "udp-with-padding": E / IP(dst="198.51.100.2") / UDP(dport=53) / Raw(b"q"),
    }
    out = {k: bytes(v) for k, v in out.items() if v is not None}
    udp6 = bytearray(bytes(E / V6 / UDP(dport=53) / Raw(b"abcd")))
    udp6[18:20] = struct.pack("!H", 4)                        # payload length 4 < 8
    out["ipv6-payload-shorter-than-udp"] = bytes(udp6)
    udp6[18:20] = struct.pack("!H", 400)
    out["ipv6-payload-len-past-frame"] = bytes(udp6)
    udp6[18:20] = b"\0\0"                                      # 0, and no hop-by-hop header
    out["ipv6-zero-length-no-hbh"] = bytes(udp6)
    jumbo = bytearray(bytes(E / V6 / IPv6ExtHdrHopByHop() / UDP(dport=53)))
    jumbo[18:20] = b"\0\0"                                      # a jumbogram: to the end
    out["ipv6-jumbo-length"] = bytes(jumbo)
    tcp = bytearray(bytes(E / V4 / TCP(dport=22)))
    tcp[16:18] = struct.pack("!H", 60)                        # 20 bytes more than there are
    out["tot-len-past-frame"] = bytes(tcp)
    # a first fragment with 8 bytes of TCP, padded with bytes that look like the rest
    first = bytes(E / IP(flags="MF", proto=6, dst="198.51.100.2") / Raw(syn[:8]))
    out["frag-first-padding-looks-like-tcp"] = first + syn[8:] + bytes(6)
    out["udp-with-padding"] += b"\xff" * 20
    return out


# nfp_parse's classification of each edge packet: (malformed, incomplete); anything not
# listed here parses.
EDGE_CLASS = {
    "ipv4-ah-in-ah": (True, True),
    "ipv4-frag-first-short": (True, True),
    "ipv6-frag-first-short": (True, True),
    "ipv6-frag-first-chain-cut": (True, True),
    "frag-first-padding-looks-like-tcp": (True, True),
    "ipv6-payload-shorter-than-udp": (True, False),
    "ipv6-payload-len-past-frame": (True, False),
    "ipv6-zero-length-no-hbh": (True, False),
    "tot-len-past-frame": (True, False),
    "three-tags": (True, True),
    "ipv6-chain-too-long": (True, True),
}


def kernel_view(dump: dict) -> dict:
    """struct nfp_pkt as decoded from the map → the Python model's field types."""
    out = dict(dump)
    out["sport"] = socket.ntohs(dump["sport"])
    out["dport"] = socket.ntohs(dump["dport"])
    out["saddr"] = b"".join(w.to_bytes(4, "little") for w in dump["saddr"])
    out["daddr"] = b"".join(w.to_bytes(4, "little") for w in dump["daddr"])
    out["vlan"] = list(dump["vlan"])
    out.pop("pad", None)
    return out


def model_view(p: P.Parsed) -> dict:
    return {"flags": p.flags, "l3_proto": p.l3_proto, "l3_off": p.l3_off, "l4_off": p.l4_off,
            "vlan": p.vlan, "vlan_depth": p.vlan_depth, "l4_proto": p.l4_proto,
            "tcp_flags": p.tcp_flags, "ttl": p.ttl, "sport": p.sport, "dport": p.dport,
            "saddr": p.saddr, "daddr": p.daddr}


@pytest.fixture(scope="module", params=["xdp", "tc"])
def parser(request):
    with load_nf(SourceNF(SRC), request.param) as nf:
        yield nf


def tc_test_run_refuses(data: bytes) -> bool:
    """BPF_PROG_TEST_RUN for TC builds an skb and refuses an IPv4 packet with less than
    20 bytes of IP header, or IPv6 with less than 40 (skb->protocol from the ethertype)."""
    ethertype = data[12:14]
    return ((ethertype == b"\x08\x00" and len(data) - 14 < 20) or
            (ethertype == b"\x86\xdd" and len(data) - 14 < 40))


def check(nf, data: bytes):
    if nf.hook == "tc" and tc_test_run_refuses(data):
        with pytest.raises(KernelError, match="EINVAL"):
            nf.run(data)
        return P.parse_packet(data)
    run = nf.run(data)
    model = P.parse_packet(data)
    dump = nf.obj.maps[".bss"][0]["nf_parse_dump__dump"]
    assert kernel_view(dump) == model_view(model)
    assert run.result == (Verdict.DROP if model.malformed else 1)
    assert run.retval == nf.expected_retval(run.result)
    return model


@pytest.mark.parametrize("name", sorted(hostile_packets()))
def test_hostile_packet_parses_like_the_model(parser, name):
    model = check(parser, hostile_packets()[name])
    expect = EDGE_CLASS.get(name, (name.startswith(("truncated", "ihl-", "tot-len", "tcp-doff",
                                                    "wrong-ip")), False))
    assert (model.malformed, model.incomplete) == expect, hex(model.flags)
    if name in ("ipv4-ah-tcp", "ipv6-ah-tcp"):
        assert model.flags & P.F_AH and model.l4_proto == 6 and model.has_l4
        assert (model.sport, model.dport, model.tcp_flags) == (4000, 22, 0x02)
        assert model.l4_off == 14 + (20 if name.startswith("ipv4") else 40) + \
            (24 if name.startswith("ipv4") else 32)
    if name == "ipv6-hbh-ah-udp":
        assert model.flags & P.F_AH and (model.l4_proto, model.dport) == (17, 53)
        assert model.l4_off == 14 + 40 + 8 + 16
    if name == "ipv6-frag-later-dstopts":
        assert model.flags & P.F_FRAG_LATER and model.l4_proto == 60 and not model.malformed
    if name == "ipv6-jumbo-length":
        assert model.has_l4 and model.dport == 53
    if name == "udp-with-padding":
        assert model.has_l4 and model.dport == 53
    if name == "frag-later":
        assert model.flags & P.F_FRAG_LATER and not model.has_l4 and model.dport == 0
    if name == "qinq":
        assert model.vlan == [200, 100] and model.vlan_depth == 2 and model.dport == 53
    if name == "ipv4-options":
        assert model.flags & P.F_IP_OPTIONS and model.dport == 443 and model.l4_off == 14 + 28
    if name == "ipv6-ext-chain":
        assert model.l4_proto == 17 and model.dport == 53


def random_packet(rng: random.Random) -> bytes:
    """Valid packets of many shapes, then sometimes cut or with a byte flipped."""
    l2 = E
    for _ in range(rng.choice([0, 0, 1, 2])):
        l2 = l2 / Dot1Q(vlan=rng.randrange(4096))
    if rng.random() < 0.6:
        l3 = IP(src=f"10.{rng.randrange(256)}.0.1", dst="10.0.0.2",
                ihl=None, options=b"\x01" * 4 * rng.choice([0, 0, 1, 3]),
                flags=rng.choice([0, 0, 1]), frag=rng.choice([0, 0, 0, 5]))
    else:
        l3 = IPv6(src="2001:db8::1", dst=f"2001:db8::{rng.randrange(1, 999):x}")
        for _ in range(rng.choice([0, 0, 1, 2])):
            l3 = l3 / rng.choice([IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting()])
    l4 = rng.choice([TCP(sport=rng.randrange(65536), dport=rng.randrange(65536),
                         flags=rng.randrange(256)),
                     UDP(sport=rng.randrange(65536), dport=rng.randrange(65536)),
                     ICMP(type=rng.choice([0, 8, 3]), id=rng.randrange(65536))])
    data = bytearray(bytes(l2 / l3 / l4 / Raw(bytes(rng.randrange(40)))))
    roll = rng.random()
    if roll < 0.25:
        data = data[:rng.randrange(len(data))]
    elif roll < 0.4:
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def test_random_packets_parse_like_the_model(parser):
    rng = random.Random(0xC0FFEE)
    for _ in range(1500):
        data = random_packet(rng)
        if len(data) < 14:
            continue          # BPF_PROG_TEST_RUN needs an Ethernet header's worth
        check(parser, data)
