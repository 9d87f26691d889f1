"""Internet checksums for the NFs' reference models (and the tests that build packets):
the RFC 1071 checksum of a buffer and the RFC 1624 update of one for a changed field."""
from __future__ import annotations

import struct


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def checksum(data: bytes) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of the 16-bit words
    (an odd last byte padded with zero).  0 over data that carries a right checksum."""
    if len(data) % 2:
        data += b"\0"
    return ~_fold(sum(struct.unpack(f"!{len(data) // 2}H", data))) & 0xFFFF


def csum_update(check: int, old: bytes, new: bytes, udp: bool = False) -> int:
    """RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), over the 16-bit words of a field changed
    from *old* to *new*.  With *udp*: a zero checksum (none) stays zero and a computed
    zero is sent as 0xFFFF."""
    if udp and check == 0:
        return 0
    s = ~check & 0xFFFF
    for i in range(0, len(old), 2):
        s += ~int.from_bytes(old[i:i + 2], "big") & 0xFFFF
        s += int.from_bytes(new[i:i + 2], "big")
    v = ~_fold(s) & 0xFFFF
    return 0xFFFF if udp and v == 0 else v
