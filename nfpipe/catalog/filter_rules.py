"""The filter's rule language: the config parsed into ``Rule`` records, and the
constants the control plane shares with ``bpf/filter.c`` (map geometry, field
indexes, the linear entry's ``need`` bits).  ``nfpipe.catalog.filter`` is the NF;
``filter_rfc`` compiles rules into its tables.
"""
from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nfpipe.errors import SpecError
from nfpipe.nfabi import Verdict

MAX_RULES = 16384                 # NFP_FILTER_MAX_RULES (per generation)
COMBINE_CAPACITY = 1 << 20        # per generation (the map holds two)
LIN_MAX = 64                      # NFP_FILTER_LIN_MAX: linear entries per generation
CLASSIFIERS = ("auto", "linear", "tables", "compiled")
#: what a compiled filter node (its rules in its program) still changes in its maps
POLICY_KEYS = frozenset({"default", "fragments", "malformed"})
PORTS = ("out", "port1", "port2", "port3", "port4", "port5", "port6", "port7")
# proto index: 0..255 the protocol, 256 not IP, 257 + p the protocol p behind an AH header
NPROTO, NPORT, NFLAGS, NVLAN = 513, 65537, 257, 4097
NO_PROTO, NO_PORT, NO_FLAGS, UNTAGGED = 256, 65536, 256, 4096
VIA_AH = 257
FRAG_L3 = 0x7FFFFFFF
SAMPLED = 1024                    # classes the partner search estimates a big table's steps from
ROW_DEFAULT = 0xFFFFFFFF          # the b of a combine key holding class a's row default
NO_MATCH = 0xFFFFFFFF             # NFP_FILTER_NO_MATCH: a dense step's cell without a rule
DENSE_MAX = 1 << 21               # NFP_FILTER_DENSE_MAX: dense step cells, both generations
DENSE_CHUNK = 64                  # NFP_FILTER_DENSE_CHUNK: cells per element of `dense`
CROSS_MAX = 1 << 14               # cells of the cross table at most
CROSS_SLOT = 15                   # NFP_FILTER_CROSS: the slot of the cross table's class
FIXED_SRC, FIXED_DST = 0x1, 0x2   # NFP_FILTER_FIXED_*: an address field of one class
DIR_NONE = 0xFFFFFFFF             # NFP_FILTER_DIR_NONE: IPv4 addresses by the trie
DIR_NEXT = 0x80000000             # NFP_FILTER_DIR_NEXT: a table cell naming the next byte's
FIELDS = ("src", "dst", "proto", "sport", "dport", "tcp_flags", "vlan")
NFIELDS = len(FIELDS)
ST_DEFAULT, ST_MALFORMED, ST_FRAGMENT, ST_NOGEN, ST_INCOMPLETE = range(5)
STAT_NAMES = ("default", "malformed", "fragment", "aborted", "incomplete")
AH = 51

PROTOCOLS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
             "icmpv6": 58, "sctp": 132}
TCP_FLAGS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20,
             "ECE": 0x40, "CWR": 0x80}
# nfp_filter_lin.need
N_PROTO, N_SPORT, N_DPORT, N_FLAGS, N_VLAN = 0x01, 0x02, 0x04, 0x08, 0x10
N_SRC4, N_DST4, N_SRC6, N_DST6 = 0x20, 0x40, 0x80, 0x100
RULE_KEYS = frozenset({"action", "src", "dst", "proto", "sport", "dport", "tcp_flags", "vlan",
                       "name"})



# ---- config -------------------------------------------------------------------------------

def parse_action(value: Any, what: str, *, l3: bool = False) -> int:
    """'allow' -> 0, 'drop' -> NFP_DROP, 'port:N' -> N; with *l3*, 'l3' -> FRAG_L3."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v == "allow":
            return 0
        if v == "drop":
            return int(Verdict.DROP)
        if l3 and v == "l3":
            return FRAG_L3
        if v.startswith("port:"):
            n = v[5:].strip()
            if n.isdigit() and 0 <= int(n) < 8:
                return int(n)
            if n in PORTS:
                return PORTS.index(n)
    expected = "allow, drop or port:N (N = 0..7)" + (", or l3" if l3 else "")
    raise SpecError(f"filter: {what}: unknown action {value!r} (expected {expected})")


def action_text(action: int) -> str:
    if action == FRAG_L3:
        return "l3"
    if action == 0:
        return "allow"
    if action < 0:
        return Verdict(action).name.lower()
    return f"port:{action}"


def _ranges(value: Any, what: str, top: int, unit: str) -> list[tuple[int, int]]:
    """22 | "1024-65535" | "80" | [80, "8000-8080"] -> merged, sorted [(lo, hi)]."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise SpecError(f"filter: {what}: empty list (expected {unit}s or ranges)")
    out = []
    for item in items:
        lo = hi = None
        if isinstance(item, bool):
            pass
        elif isinstance(item, int):
            lo = hi = item
        elif isinstance(item, str):
            parts = item.strip().split("-")
            if len(parts) in (1, 2) and all(p.strip().isdigit() for p in parts):
                lo, hi = int(parts[0]), int(parts[-1])
        if lo is None or not (0 <= lo <= hi <= top):
            raise SpecError(f"filter: {what}: bad {unit} {item!r} (expected a number "
                            f"0..{top} or a range 'lo-hi' with lo <= hi)")
        out.append((lo, hi))
    out.sort()
    merged = [out[0]]
    for lo, hi in out[1:]:
        if lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


@functools.lru_cache(maxsize=1 << 16)
def _network(text: str):
    """ip_network(text), kept: a live update parses the deployed and the new rule set,
    mostly the same addresses, several times (the networks are immutable)."""
    return ipaddress.ip_network(text, strict=True)


def _cidr(value: Any, what: str):
    if not isinstance(value, str):
        raise SpecError(f"filter: {what}: expected a CIDR string like 10.0.0.0/8 or "
                        f"2001:db8::/32, got {value!r}")
    try:
        return _network(value.strip())
    except ValueError as exc:
        raise SpecError(f"filter: {what}: bad CIDR {value!r}: {exc}") from None


def _proto(value: Any, what: str) -> int:
    if isinstance(value, bool):
        pass
    elif isinstance(value, int) and 0 <= value <= 255:
        return value
    elif isinstance(value, str):
        v = value.strip().lower()
        if v in PROTOCOLS:
            return PROTOCOLS[v]
        if v.isdigit() and int(v) <= 255:
            return int(v)
    raise SpecError(f"filter: {what}: unknown protocol {value!r} (expected one of "
                    f"{', '.join(PROTOCOLS)} or a number 0..255)")


def _tcp_flags(value: Any, what: str) -> tuple[int, int]:
    """'SYN,!ACK' -> (mask, value): SYN must be set, ACK clear."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise SpecError(f"filter: {what}: expected flags like 'SYN,!ACK', got {value!r}")
    mask = want = 0
    for item in items:
        name = str(item).strip().upper()
        neg = name.startswith("!")
        name = name[1:].strip() if neg else name
        if name not in TCP_FLAGS:
            raise SpecError(f"filter: {what}: unknown TCP flag {item!r} (expected "
                            f"{', '.join(TCP_FLAGS)}, '!' in front for 'clear')")
        bit = TCP_FLAGS[name]
        if mask & bit:
            raise SpecError(f"filter: {what}: flag {name} given twice")
        mask |= bit
        if not neg:
            want |= bit
    return mask, want


@dataclass(frozen=True)
class Rule:
    index: int
    action: int
    src: Any = None          # ipaddress network or None
    dst: Any = None
    proto: int | None = None
    sport: tuple | None = None   # ((lo, hi), ...)
    dport: tuple | None = None
    tcp_flags: tuple | None = None   # (mask, value)
    vlan: tuple | None = None
    name: str = ""

    @property
    def family(self) -> int | None:
        net = self.src or self.dst
        return net.version if net is not None else None

    def wildcard(self, f: int) -> bool:
        return getattr(self, FIELDS[f]) is None

    @property
    def matches_all(self) -> bool:
        """No constraint at all: every packet matches, no later rule ever does."""
        return (self.src is None and self.dst is None and self.proto is None and
                self.sport is None and self.dport is None and self.tcp_flags is None and
                self.vlan is None)


def parse_rule(i: int, raw: Any) -> Rule:
    what = f"rules[{i}]"
    if not isinstance(raw, Mapping):
        raise SpecError(f"filter: {what}: expected a mapping like {{action: drop, proto: udp}}, "
                        f"got {raw!r}")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise SpecError(f"filter: {what}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                        f"(known: {', '.join(sorted(RULE_KEYS))})")
    if "action" not in raw:
        raise SpecError(f"filter: {what}: missing 'action' (allow, drop or port:N)")
    action = parse_action(raw["action"], f"{what}.action")
    src = _cidr(raw["src"], f"{what}.src") if raw.get("src") is not None else None
    dst = _cidr(raw["dst"], f"{what}.dst") if raw.get("dst") is not None else None
    if src is not None and dst is not None and src.version != dst.version:
        raise SpecError(f"filter: {what}: src {src} and dst {dst} are of different address "
                        f"families (one rule matches IPv4 or IPv6, not both)")
    proto = _proto(raw["proto"], f"{what}.proto") if raw.get("proto") is not None else None
    ports = {}
    for key in ("sport", "dport"):
        if raw.get(key) is not None:
            if proto not in (None, 6, 17):
                raise SpecError(f"filter: {what}.{key}: ports need proto tcp or udp (or no "
                                f"proto), not {raw['proto']!r}")
            ports[key] = tuple(_ranges(raw[key], f"{what}.{key}", 65535, "port"))
    flags = None
    if raw.get("tcp_flags") is not None:
        if proto not in (None, 6):
            raise SpecError(f"filter: {what}.tcp_flags: TCP flags need proto tcp (or no "
                            f"proto), not {raw['proto']!r}")
        flags = _tcp_flags(raw["tcp_flags"], f"{what}.tcp_flags")
    vlan = (tuple(_ranges(raw["vlan"], f"{what}.vlan", 4095, "VLAN id"))
            if raw.get("vlan") is not None else None)
    return Rule(i, action, src, dst, proto, ports.get("sport"), ports.get("dport"), flags, vlan,
                str(raw.get("name", "")))
