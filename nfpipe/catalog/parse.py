"""A Python model of ``nfp_parse`` (bpf/include/nfpipe/nf.h): the reference every
NF's model builds on, and what the parser tests compare the kernel against.

``parse_packet(data)`` returns a ``Parsed`` with the same fields and flag bits
as ``struct nfp_pkt``; ports and addresses are kept as ints / bytes in network
order semantics (``sport`` is the port number, ``saddr`` the raw 4 or 16 bytes).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

F_PARSED, F_MALFORMED, F_L4, F_FRAG, F_FRAG_LATER = 1, 2, 4, 8, 16
F_IP_OPTIONS, F_IPV6_EXT, F_TOO_DEEP, F_INCOMPLETE, F_AH = 32, 64, 128, 256, 512
MAX_VLANS, MAX_IPV6_EXT = 2, 8
OFF_MASK = 0x3FFF     # headers are read up to 16 KiB into the packet, no further

ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x8100, 0x88A8
IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 0, 1, 6, 17
IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_AH, IPPROTO_ICMPV6, IPPROTO_DSTOPTS = 43, 44, 51, 58, 60
_EXT = {IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_AH, IPPROTO_FRAGMENT}
_ECHO_TYPES = {8, 0, 128, 129}


@dataclass
class Parsed:
    flags: int = F_PARSED
    l3_proto: int = 0
    l3_off: int = 0
    l4_off: int = 0
    vlan: list[int] = field(default_factory=lambda: [0, 0])
    vlan_depth: int = 0
    l4_proto: int = 0
    tcp_flags: int = 0
    ttl: int = 0
    sport: int = 0
    dport: int = 0
    saddr: bytes = bytes(16)
    daddr: bytes = bytes(16)

    @property
    def malformed(self) -> bool:
        return bool(self.flags & F_MALFORMED)

    @property
    def incomplete(self) -> bool:
        """Possibly valid, but not parsed as far as its L4 header (see nf.h)."""
        return bool(self.flags & F_INCOMPLETE)

    @property
    def has_l4(self) -> bool:
        return bool(self.flags & F_L4)

    @property
    def is_ipv4(self) -> bool:
        return self.l3_proto == ETH_P_IP

    @property
    def is_ipv6(self) -> bool:
        return self.l3_proto == ETH_P_IPV6

    @property
    def src(self) -> bytes:
        """Source address: 4 bytes for IPv4, 16 for IPv6."""
        return self.saddr[:4] if self.is_ipv4 else self.saddr

    @property
    def dst(self) -> bytes:
        return self.daddr[:4] if self.is_ipv4 else self.daddr


class _Malformed(Exception):
    pass


def parse_packet(data: bytes) -> Parsed:
    p = Parsed()
    try:
        _parse(bytes(data), p)
    except _Malformed:
        p.flags |= F_MALFORMED
    return p


def _need(data: bytes, off: int, n: int) -> None:
    if off > OFF_MASK or off + n > len(data):
        raise _Malformed


def _hdr(data: bytes, p: Parsed, off: int, n: int, end: int) -> None:
    """``n`` header bytes at ``off`` inside the datagram ending at ``end`` (nfp__hdr)."""
    if off + n > end:
        if p.flags & F_FRAG:
            p.flags |= F_INCOMPLETE
        raise _Malformed
    if off > OFF_MASK or off + n > len(data):
        p.flags |= F_INCOMPLETE
        raise _Malformed


def _parse(data: bytes, p: Parsed) -> None:
    _need(data, 0, 14)
    proto = struct.unpack_from("!H", data, 12)[0]
    off = 14
    for i in range(MAX_VLANS):
        if proto not in (ETH_P_8021Q, ETH_P_8021AD):
            break
        _need(data, off, 4)
        tci, proto = struct.unpack_from("!HH", data, off)
        p.vlan[i] = tci & 0x0FFF
        p.vlan_depth += 1
        off += 4
    if proto in (ETH_P_8021Q, ETH_P_8021AD):
        p.flags |= F_TOO_DEEP | F_INCOMPLETE
        raise _Malformed
    p.l3_proto = proto
    p.l3_off = off
    if proto == ETH_P_IP:
        _parse_ipv4(data, p)
    elif proto == ETH_P_IPV6:
        _parse_ipv6(data, p)


def _parse_ipv4(data: bytes, p: Parsed) -> None:
    off = p.l3_off
    _need(data, off, 20)
    vihl = data[off]
    version, ihl = vihl >> 4, vihl & 0x0F
    if version != 4 or ihl < 5:
        raise _Malformed
    hlen = ihl * 4
    _need(data, off, hlen)
    tot_len, frag = struct.unpack_from("!H2xH", data, off + 2)
    end = off + tot_len
    if tot_len < hlen or end > len(data):
        raise _Malformed
    if hlen > 20:
        p.flags |= F_IP_OPTIONS
    p.ttl = data[off + 8]
    p.l4_proto = data[off + 9]
    p.saddr = data[off + 12:off + 16] + bytes(12)
    p.daddr = data[off + 16:off + 20] + bytes(12)
    p.l4_off = off + hlen
    if frag & (0x2000 | 0x1FFF):
        p.flags |= F_FRAG
    if frag & 0x1FFF:
        p.flags |= F_FRAG_LATER
    if p.l4_proto == IPPROTO_AH and not p.flags & F_FRAG_LATER:
        _hdr(data, p, p.l4_off, 8, end)
        p.flags |= F_AH
        p.l4_proto, ahlen = data[p.l4_off], data[p.l4_off + 1]
        p.l4_off += (ahlen + 2) * 4
        if p.l4_proto == IPPROTO_AH:
            p.flags |= F_TOO_DEEP | F_INCOMPLETE
            raise _Malformed
    _parse_l4(data, p, end)


def _parse_ipv6(data: bytes, p: Parsed) -> None:
    off = p.l3_off
    _need(data, off, 40)
    if data[off] >> 4 != 6:
        raise _Malformed
    p.saddr = data[off + 8:off + 24]
    p.daddr = data[off + 24:off + 40]
    p.ttl = data[off + 7]
    payload_len = struct.unpack_from("!H", data, off + 4)[0]
    nxt = data[off + 6]
    off += 40
    end = len(data) if payload_len == 0 and nxt == IPPROTO_HOPOPTS else off + payload_len
    if end > len(data):
        raise _Malformed
    for _ in range(MAX_IPV6_EXT):
        if nxt not in _EXT:
            break
        _hdr(data, p, off, 8, end)
        p.flags |= F_IPV6_EXT
        if nxt == IPPROTO_FRAGMENT:
            p.flags |= F_FRAG
            later = struct.unpack_from("!H", data, off + 2)[0] & 0xFFF8
            nxt = data[off]
            off += 8
            if later:
                p.flags |= F_FRAG_LATER
                break
        elif nxt == IPPROTO_AH:
            p.flags |= F_AH
            nxt, hlen = data[off], data[off + 1]
            off += (hlen + 2) * 4
        else:
            nxt, hlen = data[off], data[off + 1]
            off += (hlen + 1) * 8
    if not p.flags & F_FRAG_LATER and nxt in _EXT:
        p.flags |= F_TOO_DEEP | F_INCOMPLETE
        raise _Malformed
    if off > end:
        if p.flags & F_FRAG:
            p.flags |= F_INCOMPLETE
        raise _Malformed
    p.l4_proto = nxt
    p.l4_off = off & 0xFFFF
    _parse_l4(data, p, end)


def _parse_l4(data: bytes, p: Parsed, end: int) -> None:
    off = p.l4_off
    if p.flags & F_FRAG_LATER:
        return
    if p.l4_proto == IPPROTO_TCP:
        _hdr(data, p, off, 20, end)
        doff = data[off + 12] >> 4
        if doff < 5:
            raise _Malformed
        _hdr(data, p, off, doff * 4, end)
        p.sport, p.dport = struct.unpack_from("!HH", data, off)
        p.tcp_flags = data[off + 13]
    elif p.l4_proto == IPPROTO_UDP:
        _hdr(data, p, off, 8, end)
        p.sport, p.dport = struct.unpack_from("!HH", data, off)
    elif p.l4_proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        _hdr(data, p, off, 8, end)
        itype, code = data[off], data[off + 1]
        p.dport = itype << 8 | code
        if itype in _ECHO_TYPES:
            p.sport = struct.unpack_from("!H", data, off + 4)[0]
    else:
        return
    p.flags |= F_L4
