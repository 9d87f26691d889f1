"""The load balancer's pure functions, each the twin of its counterpart in
``bpf/lb.c`` or a function of the configuration alone: the Maglev lookup table of a
backend set, the flow hash that picks a slot, and the hint bit of an address.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import struct
from collections.abc import Mapping

M32 = 0xFFFFFFFF


# ---- Maglev -------------------------------------------------------------------------------

def _permutation(name: str, size: int) -> tuple[int, int]:
    d = hashlib.blake2b(name.encode(), digest_size=16, person=b"nfpipe-lb").digest()
    offset = int.from_bytes(d[:8], "little") % size
    skip = int.from_bytes(d[8:], "little") % (size - 1) + 1
    return offset, skip


def maglev_table(backends: list[tuple[str, int, int]], size: int) -> list[int]:
    """Weighted Maglev lookup table of *size* slots (a prime) from (name, weight, id).

    A pure function of the backends' names and weights and of *size*: the id only
    labels a backend's slots (the data path stores ids), so two LBs that give the
    same backends different ids still send every flow to the same backend, and a
    long-running LB agrees with a freshly loaded one whatever its update history.

    Every backend walks its own permutation of the slots (offset and skip from a
    hash of its name); backends take their turns in the order of their names; in
    each round a backend takes ``weight`` turns, each claiming its next still-free
    preferred slot, so its share of the slots is proportional to its weight (to
    within weight/size).  This is Maglev's own construction: removing one of N
    backends moves its own slots and, by the rebuild, about a few percent more
    (tests/nf/test_lb.py measures it), not the (N-1)/N of a hash modulo N.

    The walk is done turn by turn as that describes (each turn claims exactly one
    slot, so *size* turns fill the table), with a backend's place in its permutation
    kept as a slot number; a process keeps the last tables it computed, by their
    inputs (an agent or a deploy recomputing the same VIP gets a copy).
    """
    if not backends:
        return [0] * size
    if len({name for name, _, _ in backends}) != len(backends):
        raise ValueError("maglev_table: two backends with the same name")
    order = tuple((name, weight, bid) for name, weight, bid in
                  sorted(backends, key=lambda b: b[0]))
    return list(_maglev(order, size))


@functools.lru_cache(maxsize=16)
def _maglev(order: tuple[tuple[str, int, int], ...], size: int) -> tuple[int, ...]:
    table = [0] * size
    perms = [_permutation(name, size) for name, _w, _bid in order]
    pos = [offset for offset, _skip in perms]           # each backend's next slot to try
    skips = [skip for _offset, skip in perms]
    ids = [bid for _name, _w, bid in order]
    turns = [k for k, (_name, weight, _bid) in enumerate(order) for _ in range(weight)]
    for k in itertools.islice(itertools.cycle(turns), size):
        c, skip = pos[k], skips[k]
        while table[c]:
            c += skip
            if c >= size:
                c -= size
        table[c] = ids[k]
        c += skip
        pos[k] = c - size if c >= size else c
    return tuple(table)


def maglev_names(table: list[int], names: Mapping[int, str]) -> list[str]:
    """A table of ids as the backends' names: what two LBs compare (ids may differ)."""
    return [names.get(bid, "") for bid in table]


# ---- flow hash: the twin of lb.c's flow_hash -----------------------------------------------

def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & M32


def _mix(h: int, w: int) -> int:
    w = (w * 0xCC9E2D51) & M32
    w = _rotl(w, 15)
    w = (w * 0x1B873593) & M32
    h ^= w
    h = _rotl(h, 13)
    return (h * 5 + 0xE6546B64) & M32


def flow_hash(seed: int, family: int, saddr: bytes, daddr: bytes, sport: int, dport: int,
              proto: int) -> int:
    """Hash of a flow as lb.c computes it (addresses as wire bytes, ports as numbers)."""
    h = seed & M32
    for w in struct.unpack("<8I", saddr.ljust(16, b"\0") + daddr.ljust(16, b"\0")):
        h = _mix(h, w)
    h = _mix(h, int.from_bytes(struct.pack("!HH", sport, dport), "little"))
    h = _mix(h, proto | family << 8)
    h ^= 40
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


HINT_WORDS = 512             # LB_HINT_WORDS: 32768 bits per set

# ---- the VIP table: the twin of lb.c's lb_vip_slot, and the placement -------------------

VIP_SLOT_BITS = 7            # LB_VIP_SLOT_BITS
VIP_SLOTS = 1 << VIP_SLOT_BITS
VIP_PROBES = 4               # LB_VIP_PROBES
VIP_KEYS_MAX = VIP_SLOTS // 4  # 2 * LB_MAX_VIPS: a VIP and its ADDR_ONLY marker each
SEED_TRIES = 4096

# (family, addr (4 or 16 bytes), port, proto): a VIP, or with port 0 an ADDR_ONLY marker
VipKey = tuple[int, bytes, int, int]


def _vip_mix(h: int, w: int) -> int:
    h = ((h ^ w) * 0x9E3779B1) & M32
    return h ^ (h >> 15)


def vip_slot(seed: int, key: VipKey) -> int:
    """lb_vip_slot of lb.c: the first slot of *key* in a generation seeded *seed*."""
    family, addr, port, proto = key
    h = seed & M32
    for w in struct.unpack("<4I", addr.ljust(16, b"\0")):
        h = _vip_mix(h, w)
    h = _vip_mix(h, int.from_bytes(port.to_bytes(2, "big"), "little") | proto << 16 |
                 family << 24)
    return ((h * 0x85EBCA6B) & M32) >> (32 - VIP_SLOT_BITS)


def place_vips(keys: list[VipKey], start: int = 1) -> tuple[int, dict[int, VipKey]]:
    """A seed (31 bits) and slot -> key for *keys* such that each key lies within
    VIP_PROBES slots of its first one, with no empty slot between (what lb.c's search
    walks).  Seeds are tried from *start*; keys go in by linear probing, in order."""
    if len(keys) > VIP_KEYS_MAX:
        raise ValueError(f"{len(keys)} VIP keys: the table holds {VIP_KEYS_MAX}")
    for n in range(SEED_TRIES):
        seed = (start + n) & 0x7FFFFFFF
        slots: dict[int, VipKey] = {}
        for k in keys:
            first = vip_slot(seed, k)
            at = next((s for s in ((first + i) % VIP_SLOTS for i in range(VIP_PROBES))
                       if s not in slots), None)
            if at is None:
                break
            slots[at] = k
        else:
            return seed, slots
    raise RuntimeError(f"no seed of {SEED_TRIES} places {len(keys)} VIP keys within "
                       f"{VIP_PROBES} probes")


def hint_bit(addr: bytes) -> int:
    """lb_hint_bit of lb.c: the bit of an address (4 or 16 bytes) in a hint set."""
    a, b, c, d = struct.unpack("<4I", addr.ljust(16, b"\0"))
    return (((a ^ b ^ c ^ d) * 0x9E3779B1) & 0xFFFFFFFF) >> 17


def _hint_set(words: list[int], addrs) -> list[int]:
    out = list(words)
    for addr in addrs:
        bit = hint_bit(addr)
        out[bit >> 6] |= 1 << (bit & 63)
    return out
