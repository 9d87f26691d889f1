"""The filter NF: ordered first-match rules, classified in constant time.

Config (a node's ``config:`` in the pipeline YAML)::

    default: allow            # allow | drop | port:N   (no rule matched)
    fragments: l3             # l3 | allow | drop | port:N   (non-first fragments)
    malformed: drop           # allow | drop | port:N   (truncated or inconsistent headers)
    max_table_entries: 1048576
    classifier: auto          # auto | linear | tables
    rules:                    # first match wins
      - {action: drop, proto: udp}
      - {action: drop, proto: tcp, dport: [80, 443]}
      - {action: allow, src: 10.0.0.0/8, dst: 10.1.0.0/16, sport: 1024-65535,
         dport: 22, tcp_flags: "SYN,!ACK", vlan: 100}
      - {action: "port:2", src: "2001:db8::/32", proto: icmpv6}

Actions: ``allow`` sends the packet to port 0 ("out"), ``port:N`` (N = 0..7) to
port N, ``drop`` ends it (NFP_DROP).

A packet the parser could not take as far as its L4 header although it may be
valid (more than two VLAN tags, an IPv6 extension-header chain longer than
eight, a first fragment that ends inside its L4 header, headers past 16 KiB:
``NFP_F_INCOMPLETE``) is always dropped, whatever ``malformed`` says: a rule
could not be applied to it, and the stack would accept it.  ``proto: ah``
matches every packet carrying an AH header (IPv4 or IPv6); the other fields
judge the protocol AH protects (``proto: tcp, dport: 22`` matches TCP in AH).

The control plane compiles the rules into Recursive-Flow-Classification tables
(``compile_rules``): one equivalence-class lookup per field, then six pairwise
combinations through a hash map, the last one giving the first matching rule.
A small rule set (at most ``LIN_MAX`` entries once its port and VLAN ranges are
expanded, ``linear_entries``) is classified instead by a first-match scan that
compares only the fields each rule names: a few nanoseconds where the tables cost
a dozen map lookups.  ``classifier: auto`` picks by size, per generation, so an
update may move a node from one to the other; ``linear`` and ``tables`` force one.
See docs/nf/filter.md for the map layout and the update protocol.
"""
from __future__ import annotations

import functools
import ipaddress
import struct
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nfpipe.catalog import parse as P
from nfpipe.catalog.base import NetworkFunction, NodeMaps
from nfpipe.errors import ConfigErrors, KernelError, SpecError
from nfpipe.kernel import syscall as sc
from nfpipe.kernel.sync import rcu_barrier
from nfpipe.nfabi import Verdict

MAX_RULES = 16384                 # NFP_FILTER_MAX_RULES (per generation)
COMBINE_CAPACITY = 1 << 20        # per generation (the map holds two)
LIN_MAX = 64                      # NFP_FILTER_LIN_MAX: linear entries per generation
CLASSIFIERS = ("auto", "linear", "tables")
# proto index: 0..255 the protocol, 256 not IP, 257 + p the protocol p behind an AH header
NPROTO, NPORT, NFLAGS, NVLAN = 513, 65537, 257, 4097
NO_PROTO, NO_PORT, NO_FLAGS, UNTAGGED = 256, 65536, 256, 4096
VIA_AH = 257
FRAG_L3 = 0x7FFFFFFF
SAMPLED = 1024                    # classes the partner search estimates a big table's steps from
ROW_DEFAULT = 0xFFFFFFFF          # the b of a combine key holding class a's row default
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
            if n in Filter.ports:
                return Filter.ports.index(n)
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
        return all(self.wildcard(f) for f in range(NFIELDS))


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


# ---- compiling rules into tables -------------------------------------------------------------

def _bits(x: int):
    """The positions of x's set bits, lowest first."""
    if x.bit_length() <= 256 or x.bit_count() <= 16:
        while x:
            low = x & -x
            yield low.bit_length() - 1
            x ^= low
        return
    # A rule bitset is as wide as the rule set: clearing one bit at a time copies it
    # once per bit.  With more than a few bits set, its digits are scanned in C.
    digits = bin(x)[:1:-1]
    i = digits.find("1")
    while i >= 0:
        yield i
        i = digits.find("1", i + 1)


def _lowest(x: int) -> int:
    return (x & -x).bit_length() - 1


class _Node:
    """One table of the RFC tree: its class bitsets and which fields it covers."""

    def __init__(self, fields: frozenset[int], classes: list[int], slot: int):
        self.fields = fields
        self.classes = classes
        self.slot = slot
        self.columns = None        # _Compiler.columns(self), made once per node


@dataclass
class Tables:
    """A compiled rule set: what one generation of the maps holds."""

    src4: list = field(default_factory=list)     # (prefixlen, addr bytes, class)
    src6: list = field(default_factory=list)
    dst4: list = field(default_factory=list)
    dst6: list = field(default_factory=list)
    noaddr_src: int = 0
    noaddr_dst: int = 0
    proto: list = field(default_factory=list)
    sport: list = field(default_factory=list)
    dport: list = field(default_factory=list)
    flags: list = field(default_factory=list)
    vlan: list = field(default_factory=list)
    steps: list = field(default_factory=list)    # per step: (left slot, right slot, entries)
    actions: list = field(default_factory=list)
    catch_all: int | None = None                 # index of a match-everything rule
    sizes: dict = field(default_factory=dict)    # table name -> entries (for reports)

    @property
    def combine_entries(self) -> int:
        return sum(len(e) for _l, _r, e in self.steps)


class _Compiler:
    def __init__(self, rules: Sequence[Rule], limit: int):
        self.rules = rules
        self.limit = limit
        n = len(rules)
        self.all = (1 << n) - 1
        # wild[f]: rules without a constraint on field f (they match every value, "absent" too)
        self.wild = [sum(1 << r.index for r in rules if r.wildcard(f)) for f in range(NFIELDS)]

    def wild_outside(self, fields: frozenset[int]) -> int:
        w = self.all
        for f in range(NFIELDS):
            if f not in fields:
                w &= self.wild[f]
        return w

    def trimmer(self, fields: frozenset[int]):
        """Drop from a class every rule after the first one that matches whatever the fields
        outside *fields* hold: that rule is in the final intersection whenever this class is,
        so no later rule can win.

        Why the first match m survives: a class is only ever cut after a rule k that is in
        it (so k matches the packet in this table's fields) and that matches anything in
        every other field, so k matches the packet; m <= k, so m is never cut.  The
        intersections are subsets of the untrimmed ones, hence their lowest rule is m."""
        w = self.wild_outside(fields)

        def trim(bits: int) -> int:
            hit = bits & w
            return bits & ((hit & -hit) * 2 - 1) if hit else bits
        return trim

    def classes(self, f: int, bitsets: Sequence[int]) -> tuple[_Node, list[int]]:
        trim = self.trimmer(frozenset({f}))
        ids: dict[int, int] = {}
        out = []
        for b in bitsets:
            t = trim(b)
            cid = ids.get(t)
            if cid is None:
                cid = ids[t] = len(ids)
            out.append(cid)
        return _Node(frozenset({f}), list(ids), f), out

    # --- phase 0 -------------------------------------------------------------------------

    def address(self, f: int, attr: str):
        wild = self.wild[f]
        per_family = {}
        bitsets = [wild]                                 # index 0: not IP
        for version, width in ((4, 32), (6, 128)):
            nets: dict[tuple[int, int], int] = {(0, 0): 0}     # (prefixlen, address) -> rules
            for r in self.rules:
                net = getattr(r, attr)
                if net is not None and net.version == version:
                    key = (net.prefixlen, int(net.network_address))
                    nets[key] = nets.get(key, 0) | 1 << r.index
            plens = sorted({pl for pl, _a in nets})
            full = (1 << width) - 1
            entries = []
            for pl, addr in sorted(nets):
                b = wild
                for sup in plens:
                    if sup > pl:
                        break
                    mask = full ^ (full >> sup)
                    b |= nets.get((sup, addr & mask), 0)
                entries.append((pl, addr.to_bytes(width // 8, "big"), len(bitsets)))
                bitsets.append(b)
            per_family[version] = entries
        node, ids = self.classes(f, bitsets)
        out = {v: [(pl, a, ids[i]) for pl, a, i in e] for v, e in per_family.items()}
        return node, out[4], out[6], ids[0]

    def array(self, f: int, attr: str, size: int, absent: int, values):
        """A field looked up by value: *values(rule)* lists the rule's (lo, hi) ranges."""
        wild = self.wild[f]
        start: dict[int, int] = {}
        end: dict[int, int] = {}
        for r in self.rules:
            if getattr(r, attr) is None:
                continue
            for lo, hi in values(r):
                start[lo] = start.get(lo, 0) | 1 << r.index
                end[hi + 1] = end.get(hi + 1, 0) | 1 << r.index
        cuts = sorted(set(start) | set(end) | {0, absent, size})
        bitsets, spans = [], []
        cur = 0
        for a, b in zip(cuts, cuts[1:]):
            cur = (cur & ~end.get(a, 0)) | start.get(a, 0)
            bitsets.append(cur | wild)
            spans.append((a, b))
        bitsets.append(wild)                             # the "absent" index
        node, ids = self.classes(f, bitsets)
        table = [0] * size
        for (a, b), cid in zip(spans, ids):
            table[a:b] = [cid] * (b - a)
        table[absent] = ids[-1]
        return node, table

    # --- combining -------------------------------------------------------------------------

    def columns(self, B: _Node):
        """What pairing any table with B's classes needs, the same whichever the partner
        (the search of compile_rules tries every partner): the rules wildcard in every
        field of B, for each other rule the B classes holding it, the most common
        share of the wildcard rules and the classes with another share."""
        if B.columns is None:
            wb = self.all                    # rules wildcard in every field of B
            for f in B.fields:
                wb &= self.wild[f]
            inv: dict[int, int] = {}
            groups: dict[int, int] = {}
            for j, b in enumerate(B.classes):
                for r in _bits(b & ~wb):
                    inv[r] = inv.get(r, 0) | 1 << j
                w = b & wb
                groups[w] = groups.get(w, 0) | 1 << j
            common = max(groups, key=lambda w: groups[w].bit_count())
            B.columns = (wb, inv, common, [(w, g) for w, g in groups.items() if w != common])
        return B.columns

    def _candidates(self, A: _Node, B: _Node, sample: Sequence[int] | None = None):
        """For each class a of A (or of *sample*, some of them): (a, mask of B's classes
        that need an entry, row default).

        A rule wildcard in every field of B is in (almost) every class of B, so most pairs
        (a, b) intersect only through such rules and all give the same class: a's row
        default, stored once under (a, ROW_DEFAULT).  Pairs are stored only where b holds
        a rule of a that is specific in B, or where trimming left b a different share of
        the wildcard rules."""
        wb, inv, common, others = self.columns(B)
        memo: dict[int, int] = {}
        for a in (A.classes if sample is None else sample):
            spec = a & ~wb
            cand = memo.get(spec)
            if cand is None:
                cand = 0
                for r in _bits(spec):
                    cand |= inv.get(r, 0)
                memo[spec] = cand
            row = a & common
            for w, g in others:
                if a & w != row:
                    cand |= g
            yield a, cand, row

    def count(self, A: _Node, B: _Node, cap: int) -> int:
        """The entries combining A with B makes (more than *cap*: some number above it).
        With more than SAMPLED classes in A it is an estimate from an even sample of
        them: it only chooses the partner, and the limit is checked on the real step."""
        sample, scale = None, 1.0
        if len(A.classes) > SAMPLED:
            stride = len(A.classes) / SAMPLED
            sample = [A.classes[int(k * stride)] for k in range(SAMPLED)]
            scale = len(A.classes) / SAMPLED
        total = 0
        for _a, cand, row in self._candidates(A, B, sample):
            total += cand.bit_count() + (1 if row else 0)
            if total * scale > cap:
                break
        return int(total * scale)

    def combine(self, A: _Node, B: _Node, slot: int, final: bool, cap: int):
        """The step combining A and B: its node and entries; None if more than *cap*."""
        fields = A.fields | B.fields
        trim = self.trimmer(fields)
        ids: dict[int, int] = {}
        entries = []
        bcls = B.classes

        def value(inter: int) -> int:
            if final:
                return _lowest(inter)
            cid = ids.get(inter)
            if cid is None:
                cid = ids[inter] = len(ids)
            return cid
        for i, (a, cand, row) in enumerate(self._candidates(A, B)):
            if row:
                entries.append((i, ROW_DEFAULT, value(trim(row))))
            for j in _bits(cand):
                inter = trim(a & bcls[j])
                if inter:
                    entries.append((i, j, value(inter)))
                elif row:
                    raise AssertionError("filter compiler: empty pair inside a row default")
            if len(entries) > cap:
                return None
        return _Node(fields, list(ids), slot), entries


def compile_rules(rules: Sequence[Rule], limit: int = COMBINE_CAPACITY) -> Tables:
    """Build the tables of one generation; SpecError when they would exceed *limit* entries."""
    # A rule without any constraint ends the list: later rules never match, and "no
    # entry" in the tables then means "this rule" (an explicit default).
    t = Tables()
    for r in rules:
        if r.matches_all:
            t.catch_all = r.index
            rules = rules[:r.index]
            break
    c = _Compiler(rules, limit)
    sa, t.src4, t.src6, t.noaddr_src = c.address(0, "src")
    da, t.dst4, t.dst6, t.noaddr_dst = c.address(1, "dst")
    def proto_values(r):
        if r.proto == AH:               # AH itself, and anything behind an AH header
            return [(AH, AH), (VIA_AH, VIA_AH + 255)]
        return [(r.proto, r.proto), (VIA_AH + r.proto, VIA_AH + r.proto)]
    pr, t.proto = c.array(2, "proto", NPROTO, NO_PROTO, proto_values)
    sp, t.sport = c.array(3, "sport", NPORT, NO_PORT, lambda r: r.sport)
    dp, t.dport = c.array(4, "dport", NPORT, NO_PORT, lambda r: r.dport)

    def flag_values(r):
        mask, want = r.tcp_flags
        return [(v, v) for v in range(256) if v & mask == want]
    fl, t.flags = c.array(5, "tcp_flags", NFLAGS, NO_FLAGS, flag_values)
    vl, t.vlan = c.array(6, "vlan", NVLAN, UNTAGGED, lambda r: r.vlan)
    nodes = [sa, da, pr, sp, dp, fl, vl]
    t.sizes = {FIELDS[n.slot]: len(n.classes) for n in nodes}
    t.actions = [r.action for r in rules]
    if not rules:
        # Nothing can match: a final step with no entries sends everything to the default.
        t.steps = [(0, 1, [])] + [(NFIELDS + s, NFIELDS + s, []) for s in range(NFIELDS - 2)]
        return t
    used = 0
    step = 0
    while len(nodes) > 1:
        # Grow the table with the most classes, with the partner that keeps the step
        # smallest: the big field's classes get split by one small field at a time
        # (a left-deep tree), instead of building a large cross product of small fields
        # that every big class then pairs with.
        big = max(range(len(nodes)), key=lambda k: len(nodes[k].classes))
        best = None
        for other in range(len(nodes)):
            if other == big:
                continue
            for x, y in ((big, other), (other, big)):      # which side holds the rows
                cap = best[0] if best else limit - used
                n = c.count(nodes[x], nodes[y], cap)
                if best is None or n < best[0]:
                    best = (n, x, y)
        n, x, y = best
        A, B = nodes[x], nodes[y]
        final = len(nodes) == 2
        done = c.combine(A, B, NFIELDS + step, final, limit - used) if used + n <= limit \
            else None
        if done is None:
            names = lambda node: "+".join(FIELDS[f] for f in sorted(node.fields))
            n = max(n, limit - used + 1)
            raise SpecError(
                f"filter: rule set too complex: combining ({names(A)}) with "
                f"({names(B)}) needs {n} or more table entries on top of {used} already "
                f"used, over the limit max_table_entries={limit} ({len(rules)} rules; per-field "
                f"classes: {', '.join(f'{k}={v}' for k, v in t.sizes.items())}).  Split the "
                f"rules across two filter nodes or give rules fewer distinct field combinations")
        node, entries = done
        t.steps.append((A.slot, B.slot, entries))
        t.sizes[f"step{step}"] = len(entries)
        used += len(entries)
        nodes = [nd for k, nd in enumerate(nodes) if k not in (x, y)] + [node]
        del A, B
        step += 1
    return t


# ---- the linear classifier --------------------------------------------------------------------

def linear_entries(rules: Sequence[Rule], limit: int = LIN_MAX) -> list[dict] | None:
    """The entries of the linear classifier (``struct nfp_filter_lin`` as dicts), one per
    combination of a rule's sport, dport and VLAN ranges, in rule order, up to the first
    catch-all rule (the default path counts it); None if more than *limit*."""
    out: list[dict] = []
    for r in rules:
        if r.matches_all:
            break
        need = 0
        base = {"rule": r.index, "action": r.action}
        if r.proto is not None:
            need |= N_PROTO
            base["proto"] = ([AH, AH, VIA_AH, VIA_AH + 255] if r.proto == AH else
                             [r.proto, r.proto, VIA_AH + r.proto, VIA_AH + r.proto])
        if r.tcp_flags is not None:
            need |= N_FLAGS
            base["flags_mask"], base["flags_want"] = r.tcp_flags
        for attr, v4, v6 in (("src", N_SRC4, N_SRC6), ("dst", N_DST4, N_DST6)):
            net = getattr(r, attr)
            if net is None:
                continue
            need |= v4 if net.version == 4 else v6
            words = lambda b: list(struct.unpack("<4I", b.ljust(16, b"\0")))
            base[attr] = words(net.network_address.packed)
            base[f"{attr}_mask"] = words(net.netmask.packed)
        sports = r.sport or [None]
        dports = r.dport or [None]
        vlans = r.vlan or [None]
        for sp in sports:
            for dp in dports:
                for vl in vlans:
                    e = dict(base, need=need)
                    if sp is not None:
                        e["need"] |= N_SPORT
                        e["sport"] = list(sp)
                    if dp is not None:
                        e["need"] |= N_DPORT
                        e["dport"] = list(dp)
                    if vl is not None:
                        e["need"] |= N_VLAN
                        e["vlan"] = list(vl)
                    out.append(e)
                    if len(out) > limit:
                        return None
    return out


# ---- reference model ------------------------------------------------------------------------

def _in_net(addr: bytes, net) -> bool:
    if net.version != (4 if len(addr) == 4 else 6):
        return False
    width = net.max_prefixlen
    shift = width - net.prefixlen
    return int.from_bytes(addr, "big") >> shift == int(net.network_address) >> shift


def _in_ranges(v: int, ranges) -> bool:
    return any(lo <= v <= hi for lo, hi in ranges)


def rule_matches(r: Rule, p: P.Parsed) -> bool:
    """Does rule *r* match the parsed packet *p*?  (Straight from the rule's definition.)"""
    is_ip = p.is_ipv4 or p.is_ipv6
    if r.src is not None and not (is_ip and _in_net(p.src, r.src)):
        return False
    if r.dst is not None and not (is_ip and _in_net(p.dst, r.dst)):
        return False
    if r.proto is not None and not (is_ip and (p.l4_proto == r.proto or (
            r.proto == AH and p.flags & P.F_AH))):
        return False
    has_ports = p.has_l4 and p.l4_proto in (P.IPPROTO_TCP, P.IPPROTO_UDP)
    if r.sport is not None and not (has_ports and _in_ranges(p.sport, r.sport)):
        return False
    if r.dport is not None and not (has_ports and _in_ranges(p.dport, r.dport)):
        return False
    if r.tcp_flags is not None:
        mask, want = r.tcp_flags
        if not (p.has_l4 and p.l4_proto == P.IPPROTO_TCP and p.tcp_flags & mask == want):
            return False
    return not (r.vlan is not None and not (p.vlan_depth and _in_ranges(p.vlan[0], r.vlan)))


class FilterModel:
    """The filter's reference model: a linear scan of the rules, first match wins."""

    def __init__(self, nf: Filter):
        self.nf = nf

    def match(self, data: bytes) -> tuple[int, int | None]:
        """(result, index of the matching rule or None)."""
        nf = self.nf
        p = P.parse_packet(data)
        if p.incomplete:
            return int(Verdict.DROP), None
        if p.malformed:
            return nf.malformed, None
        if p.flags & P.F_FRAG_LATER and nf.fragments != FRAG_L3:
            return nf.fragments, None
        for r in nf.rules:
            if rule_matches(r, p):
                return r.action, r.index
        return nf.default, None

    def run(self, data: bytes) -> tuple[int, bytes]:
        return self.match(data)[0], bytes(data)


#: the rule set compiled last (its parsed rules, limit) -> Tables: a runtime change
#: compiles it to check it (prepare), then builds the Filter again from the config the
#: manifest stored (the same rules, the mappings' keys in another order) to write the maps
_compiled: dict[tuple[tuple[Rule, ...], int], Tables] = {}


# ---- the NF ------------------------------------------------------------------------------------

class Filter(NetworkFunction):
    """Ordered first-match packet filter (see the module docstring for the config)."""

    kind = "filter"
    source_name = "filter.c"
    ports = ("out", "port1", "port2", "port3", "port4", "port5", "port6", "port7")
    config_keys = frozenset({"default", "fragments", "malformed", "rules",
                             "max_table_entries", "classifier"})

    def __init__(self, config: Mapping[str, Any] | None = None):
        super().__init__(config)
        cfg = self.config
        self.default = parse_action(cfg.get("default", "allow"), "default")
        self.fragments = parse_action(cfg.get("fragments", "l3"), "fragments", l3=True)
        self.malformed = parse_action(cfg.get("malformed", "drop"), "malformed")
        limit = cfg.get("max_table_entries", COMBINE_CAPACITY)
        if isinstance(limit, bool) or not isinstance(limit, int) or not (
                1 <= limit <= COMBINE_CAPACITY):
            raise SpecError(f"filter: max_table_entries: expected a number 1..{COMBINE_CAPACITY}"
                            f", got {limit!r}")
        self.max_table_entries = limit
        classifier = cfg.get("classifier", "auto")
        if classifier not in CLASSIFIERS:
            raise SpecError(f"filter: classifier: expected one of {', '.join(CLASSIFIERS)}, "
                            f"got {classifier!r}")
        self.classifier = classifier
        rules = cfg.get("rules", [])
        if rules is None:
            rules = []
        if not isinstance(rules, (list, tuple)):
            raise SpecError(f"filter: rules: expected a list of rules, got {rules!r}")
        if len(rules) > MAX_RULES:
            raise SpecError(f"filter: rules: {len(rules)} rules, more than the {MAX_RULES} "
                            f"one filter node holds")
        self.rules, errors = [], []
        for i, r in enumerate(rules):
            try:
                self.rules.append(parse_rule(i, r))
            except SpecError as exc:          # every bad rule, not only the first
                errors.append((("rules", i), exc))
        if errors:
            raise ConfigErrors(errors)
        self._tables: Tables | None = None
        self.linear: list[dict] | None = None
        if classifier != "tables":
            self.linear = linear_entries(self.rules)
            if self.linear is None and classifier == "linear":
                raise SpecError(f"filter: classifier: linear holds at most {LIN_MAX} entries "
                                f"(one per combination of a rule's sport, dport and vlan "
                                f"ranges); these rules need more: use auto or tables")

    @property
    def tables(self) -> Tables:
        if self._tables is None:
            key = (tuple(self.rules), self.max_table_entries)
            self._tables = _compiled.get(key)
            if self._tables is None:
                self._tables = compile_rules(self.rules, self.max_table_entries)
                _compiled.clear()            # only the last: what prepare() compiled
                _compiled[key] = self._tables
        return self._tables

    def prepare(self) -> None:
        if self.linear is None:
            self.tables                      # noqa: B018 (compiled when first read)

    def model(self) -> FilterModel:
        return FilterModel(self)

    # --- maps -------------------------------------------------------------------------------

    def used_ports(self) -> tuple[str, ...]:
        """Port 0 and the ports a rule, the default or a policy sends packets to."""
        actions = [0, self.default, self.fragments, self.malformed] + [r.action for r in self.rules]
        used = {a for a in actions if a != FRAG_L3 and 0 <= a < len(self.ports)}
        return tuple(p for i, p in enumerate(self.ports) if i in used)

    def populate(self, maps: NodeMaps) -> None:
        self.install(maps)

    runtime_keys = config_keys           # everything: rules and policies live in maps
    map_keys = runtime_keys

    def update(self, maps: NodeMaps, config: Mapping[str, Any]) -> None:
        new = self.update_rules(maps, config)
        self.__dict__.update(new.__dict__)

    def update_rules(self, maps: NodeMaps, config: Mapping[str, Any]) -> Filter:
        """Replace the whole config (rules and policies) while traffic flows; returns the
        new Filter.  Each packet sees either the old or the new rule set."""
        new = Filter(config)
        new.install(maps)
        return new

    def install(self, maps: NodeMaps) -> int:
        """Write this config into the inactive generation, then make it active.  Returns
        the generation now active."""
        lin = self.linear
        t = self.tables if lin is None else None   # compile first: a SpecError changes nothing
        active = maps["active"]
        gens = maps["gens"]
        cur = active[0] & 1
        new = cur ^ 1
        # Packets that read `new` before the previous flip may still run: wait for them.
        rcu_barrier()
        gens[new] = self._gen_value(t, ready=0)
        if lin is not None:
            self._install_linear(maps, new, lin)
            gens[new] = self._gen_value(t, ready=1)
            active[0] = new
            return new
        # Generation-tagged entries of the hash map and the tries: delete the stale ones.
        for name in ("src4", "src6", "dst4", "dst6"):
            m = maps[name]
            _delete(m, [k for k in _hash_keys(m) if k[4] == new])
        comb = maps["combine"]
        _delete(comb, [k for k in _hash_keys(comb) if struct.unpack_from("<I", k)[0] >> 8 == new])
        # Arrays: overwrite the generation's slice.
        for name, table in (("proto", t.proto), ("sport", t.sport), ("dport", t.dport),
                            ("flags", t.flags), ("vlan", t.vlan)):
            _write_array(maps[name], new * len(table), table)
        acts = [r.action for r in self.rules]
        if acts:
            _write_array(maps["actions"], new * MAX_RULES, [a & 0xFFFFFFFF for a in acts])
            self._reset_hits(maps, new)
        for name, fmt, entries in (("src4", "<IB4s3x", t.src4), ("dst4", "<IB4s3x", t.dst4),
                                   ("src6", "<IB16s3x", t.src6), ("dst6", "<IB16s3x", t.dst6)):
            _batch(maps[name], [struct.pack(fmt, 8 + pl, new, a) for pl, a, _c in entries],
                   [struct.pack("<I", c) for _pl, _a, c in entries])
        keys, values = [], []
        for step, (_l, _r, entries) in enumerate(t.steps):
            gs = new << 8 | step
            keys += [struct.pack("<III", gs, a, b) for a, b, _v in entries]
            values += [struct.pack("<I", v) for _a, _b, v in entries]
        _batch(comb, keys, values)
        gens[new] = self._gen_value(t, ready=1)
        active[0] = new                       # the flip: one 4-byte store
        return new

    def _install_linear(self, maps: NodeMaps, gen: int, lin: list[dict]) -> None:
        m = maps["lin"]
        for i, e in enumerate(lin):
            m[gen * LIN_MAX + i] = e
        self._reset_hits(maps, gen)

    def _reset_hits(self, maps: NodeMaps, gen: int) -> None:
        n = len(self.rules)
        if n:
            zero = bytes(8 * sc.possible_cpus())
            _batch(maps["hits"], [struct.pack("<I", gen * MAX_RULES + i) for i in range(n)],
                   [zero] * n)

    def _gen_value(self, t: Tables | None, ready: int) -> dict:
        catch_all = next((r.index for r in self.rules if r.matches_all), None)
        dflt = self.default if catch_all is None else self.rules[catch_all].action
        drule = MAX_RULES if catch_all is None else catch_all
        value = {"default_action": dflt, "default_rule": drule,
                 "fragment_action": self.fragments, "malformed_action": self.malformed,
                 "ready": ready}
        if t is None:
            assert self.linear is not None
            return {**value, "linear": 1, "nlin": len(self.linear)}
        left = bytes(s[0] for s in t.steps).ljust(8, b"\0")
        right = bytes(s[1] for s in t.steps).ljust(8, b"\0")
        return {**value, "noaddr_src": t.noaddr_src, "noaddr_dst": t.noaddr_dst, "left": left,
                "right": right, "linear": 0, "nlin": 0}

    # --- counters ----------------------------------------------------------------------------

    @staticmethod
    def active_generation(maps: NodeMaps) -> int:
        return maps["active"][0] & 1

    def hits(self, maps: NodeMaps) -> list[int]:
        """Packets per rule (summed over CPUs) since this rule set became active."""
        gen = self.active_generation(maps)
        h = maps["hits"]
        return [sum(h[gen * MAX_RULES + i]) for i in range(len(self.rules))]

    @staticmethod
    def stats(maps: NodeMaps) -> dict[str, int]:
        s = maps["stats"]
        return {name: sum(s[i]) for i, name in enumerate(STAT_NAMES)}


def _hash_keys(m) -> list[bytes]:
    keys: list[bytes] = []
    cursor = None
    while True:
        try:
            ks, _vs, cursor, done = sc.map_lookup_batch(m.fd, m.key_size, m.value_size, 8192,
                                                        cursor)
        except Exception:
            return list(m.raw_keys())
        keys += ks
        if done:
            return keys


#: what a map without batch operations answers them with: EINVAL, EOPNOTSUPP, ENOTSUPP
_NO_BATCH = (22, 95, 524)


def _delete(m, keys: list[bytes], chunk: int = 1 << 16) -> None:
    for i in range(0, len(keys), chunk):
        ks = keys[i:i + chunk]
        try:
            sc.map_delete_batch(m.fd, ks)
        except KernelError as exc:
            if exc.errno not in _NO_BATCH:
                raise
            for k in ks:
                sc.map_delete_elem(m.fd, k)


def _batch(m, keys: list[bytes], values: list[bytes], chunk: int = 1 << 16) -> None:
    for i in range(0, len(keys), chunk):
        ks, vs = keys[i:i + chunk], values[i:i + chunk]
        try:
            sc.map_update_batch(m.fd, ks, vs)
        except KernelError as exc:
            if exc.errno not in _NO_BATCH:
                raise
            for k, v in zip(ks, vs):
                sc.map_update_elem(m.fd, k, v, 0)


def _write_array(m, base: int, table: Sequence[int]) -> None:
    raw_k = array("I", range(base, base + len(table))).tobytes()
    raw_v = array("I", table).tobytes()
    keys = [raw_k[i:i + 4] for i in range(0, len(raw_k), 4)]
    values = [raw_v[i:i + 4] for i in range(0, len(raw_v), 4)]
    _batch(m, keys, values)


# ---- benchmark ---------------------------------------------------------------------------------

def benchmark_rules(n: int) -> list[dict]:
    """n rules: the seeds, IPv4 /24 sources with a TCP port each, IPv6 /48s, and last a
    5-field rule that BENCH_PACKET matches (rule n - 1, the worst case for a linear scan)."""
    rules = [{"action": "drop", "proto": "udp", "dport": 53},
             {"action": "drop", "proto": "tcp", "dport": [80, 443]}]
    for i in range(2, n - 1):
        if i % 4:
            rules.append({"action": f"port:{i % 8}", "src": f"10.{i >> 8 & 255}.{i & 255}.0/24",
                          "proto": "tcp", "dport": 1000 + i % 100})
        else:
            rules.append({"action": "drop", "src": f"2001:db8:{i:x}::/48",
                          "dst": "2001:db8:ffff::/48", "sport": "1024-65535",
                          "dport": 2000 + i % 10})
    rules.append({"action": "port:5", "src": "192.168.7.7/32", "dst": "192.168.9.0/24",
                  "proto": "tcp", "dport": "8000-8080", "tcp_flags": "SYN,!ACK", "vlan": 42})
    return rules


def bench_packet() -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Dot1Q, Ether
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=42) /
                 IP(src="192.168.7.7", dst="192.168.9.200") /
                 TCP(sport=40000, dport=8080, flags="S"))


def bench_cases() -> dict:
    """`nfpipe bench` cases: the filter with 10, 1k and 10k rules, the packet matching the last."""
    packet = bench_packet()
    return {f"filter-{label}": (lambda n=n: Filter({"default": "drop",
                                                     "rules": benchmark_rules(n)}), packet, True)
            for n, label in ((10, "10"), (1000, "1k"), (10000, "10k"))}

