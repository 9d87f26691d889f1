"""Recursive Flow Classification for the filter: a rule set compiled into the tables
one generation of its maps holds (``compile_rules`` -> ``Tables``): one
equivalence-class lookup per field, the fields with few classes crossed in one table,
then pairwise combinations of what is left, the last one naming the first matching
rule.  See docs/nf/filter.md.
"""
from __future__ import annotations

import dataclasses
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from nfpipe.catalog.filter_rules import (
    AH,
    COMBINE_CAPACITY,
    CROSS_MAX,
    CROSS_SLOT,
    DENSE_MAX,
    DIR_NEXT,
    FIELDS,
    FIXED_DST,
    FIXED_SRC,
    NFIELDS,
    NFLAGS,
    NO_FLAGS,
    NO_MATCH,
    NO_PORT,
    NO_PROTO,
    NPORT,
    NPROTO,
    NVLAN,
    ROW_DEFAULT,
    SAMPLED,
    UNTAGGED,
    VIA_AH,
    Rule,
)
from nfpipe.errors import SpecError

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
    shapes: list = field(default_factory=list)   # per step: (classes of left, of right)
    fixed: int = 0                               # FIXED_*: address fields of one class
    # the IPv4 address tables (address_table) of src and dst; None: fixed, or too large
    src4_table: array | None = None
    dst4_table: array | None = None
    actions: list = field(default_factory=list)
    catch_all: int | None = None                 # index of a match-everything rule
    sizes: dict = field(default_factory=dict)    # table name -> entries (for reports)
    # per step, the fields of its two sides: what a similar rule set's compile can follow
    plan: list = field(default_factory=list)
    # the fields crossed in one table (FIELDS indexes), each field's stride in its index,
    # and its cells: a class (the first matching rule where it is the result), NO_MATCH
    cross: tuple = ()
    cross_strides: list = field(default_factory=lambda: [0] * NFIELDS)
    cross_table: array | None = None
    result: int = 2 * NFIELDS - 2                # the slot holding the first matching rule
    # what the compile made of each field and step, for the next compile of a changed set
    memo: _Memo | None = field(default=None, repr=False, compare=False)

    @property
    def combine_entries(self) -> int:
        return sum(len(e) for _l, _r, e in self.steps)


@dataclass
class _Memo:
    """What one compile made, kept with its Tables, so that a rule set with a rule or
    a few changed is compiled as a change of it (``compile_rules``' *like*): each
    field those rules did not touch is taken as it was; every other table starts from
    the classes it had, in their order, and only appends new ones, so that a class
    keeps its id and the steps keep the rows they had."""

    rules: tuple                # the rules compiled (up to a catch-all)
    wild: list                  # _Compiler.wild
    fields: dict                # field -> what _phase0 made of it (its node first)
    cross: list | None = None   # the cross table's classes (None: final, or none)
    # per step: (left classes, right classes, entries, the step's classes)
    steps: list = field(default_factory=list)
    stale: bool = False         # a table started from its last classes kept too many unused


#: more changed rules than this, and a rule list is compiled from scratch: telling which
#: fields they changed would cost more than it saves
_REUSE_MAX = 256


def _reusable(rules: Sequence[Rule], prev: _Memo | None) -> frozenset[int] | None:
    """The fields *prev*'s compile made exactly as *rules* need them, or None when
    it is no start for them at all.  It is one if it had as many rules and those that
    changed (not the same Rule objects: the parse cache gives the unchanged ones back
    as they were) leave the same fields wildcard: every rule's bit then stands in
    wild[] and in the trimming as before.  Of those, the fields the changed rules
    constrain exactly as before are made the same."""
    if prev is None or len(prev.rules) != len(rules):
        return None
    changed = [i for i, (a, b) in enumerate(zip(rules, prev.rules)) if a is not b]
    if len(changed) > _REUSE_MAX:
        return None
    keep = set(range(NFIELDS))
    for i in changed:
        a, b = rules[i], prev.rules[i]
        for f, name in enumerate(FIELDS):
            x, y = getattr(a, name), getattr(b, name)
            if (x is None) != (y is None):
                return None
            if x != y:
                keep.discard(f)
    return frozenset(keep)


def _classes_used(made: tuple) -> list[int]:
    """The classes the lookup table of a field's phase-0 result (``_phase0``'s
    ``fields``: an array field's (node, table), an address field's (node, IPv4
    entries, IPv6 entries, not-IP class, byte table)) maps a value to."""
    if len(made) == 2:
        return made[1]
    return [e[2] for e in made[1]] + [e[2] for e in made[2]] + [made[3]]


def _stale(classes: list, used) -> bool:
    """Whether a table started from its last classes holds too many that no value maps
    to any more (each costs a row or a column of every step it is in)."""
    return len(classes) - len(set(used)) > max(4, len(classes) // 8)


def _bitset(indexes, n: int) -> int:
    """The int with bits *indexes* set (of n): a sum of 10k shifted ones builds 10k
    ever longer ints."""
    buf = bytearray((n + 7) // 8)
    for i in indexes:
        buf[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buf, "little")


def _bitsets(indexes: dict, n: int) -> dict:
    """Each key's list of rule indexes as a bitset of n: built once a key (a rule's bit
    OR-ed into a key's bitset a rule builds 10k ints of up to 10k bits)."""
    return {k: _bitset(v, n) for k, v in indexes.items()}


class _Compiler:
    def __init__(self, rules: Sequence[Rule], limit: int, prev: _Memo | None = None):
        self.rules = rules
        self.limit = limit
        self.prev = prev            # the compile this one is a change of
        wild = prev.wild if prev is not None else None
        n = len(rules)
        self.all = (1 << n) - 1
        # wild[f]: rules without a constraint on field f (they match every value, "absent" too)
        self.wild = wild if wild is not None else [
            _bitset((r.index for r in rules if r.wildcard(f)), n) for f in range(NFIELDS)]

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

    def classes(self, f: int, bitsets: Sequence[int],
                seed: Sequence[int] = ()) -> tuple[_Node, list[int]]:
        """Field f's classes (the distinct trimmed bitsets, *seed*'s first, in its order)
        and the class of each of *bitsets*."""
        trim = self.trimmer(frozenset({f}))
        ids: dict[int, int] = {b: i for i, b in enumerate(seed)}
        out = []
        for b in bitsets:
            t = trim(b)
            cid = ids.get(t)
            if cid is None:
                cid = ids[t] = len(ids)
            out.append(cid)
        return _Node(frozenset({f}), list(ids), f), out

    # --- phase 0 -------------------------------------------------------------------------

    def address(self, f: int, attr: str, seed: Sequence[int] = ()):
        wild = self.wild[f]
        per_family = {}
        bitsets = [wild]                                 # index 0: not IP
        for version, width in ((4, 32), (6, 128)):
            having: dict[tuple[int, int], list[int]] = {(0, 0): []}  # (prefixlen, address)
            for r in self.rules:
                net = getattr(r, attr)
                if net is not None and net.version == version:
                    key = (net.prefixlen, int(net.network_address))
                    having.setdefault(key, []).append(r.index)
            nets = _bitsets(having, len(self.rules))        # -> its rules
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
        node, ids = self.classes(f, bitsets, seed)
        out = {v: [(pl, a, ids[i]) for pl, a, i in e] for v, e in per_family.items()}
        return node, out[4], out[6], ids[0]

    def array(self, f: int, attr: str, size: int, absent: int, values,
              seed: Sequence[int] = ()):
        """A field looked up by value: *values(rule)* lists the rule's (lo, hi) ranges."""
        wild = self.wild[f]
        starting: dict[int, list[int]] = {}
        ending: dict[int, list[int]] = {}
        for r in self.rules:
            if getattr(r, attr) is None:
                continue
            for lo, hi in values(r):
                starting.setdefault(lo, []).append(r.index)
                ending.setdefault(hi + 1, []).append(r.index)
        n = len(self.rules)
        start, end = _bitsets(starting, n), _bitsets(ending, n)
        cuts = sorted(set(start) | set(end) | {0, absent, size})
        bitsets, spans = [], []
        cur = 0
        for a, b in zip(cuts, cuts[1:]):
            cur = (cur & ~end.get(a, 0)) | start.get(a, 0)
            bitsets.append(cur | wild)
            spans.append((a, b))
        bitsets.append(wild)                             # the "absent" index
        node, ids = self.classes(f, bitsets, seed)
        table = [0] * size
        for (a, b), cid in zip(spans, ids):
            table[a:b] = [cid] * (b - a)
        table[absent] = ids[-1]
        return node, table

    # --- crossing --------------------------------------------------------------------------

    def cross(self, nodes: Sequence[_Node], fields: Sequence[int],
              final: bool, seed: Sequence[int] = ()) -> tuple[_Node, array, list[int]]:
        """The cross table of *fields*: a cell for every combination of their classes, at
        the sum of each class times its field's stride.  A cell holds the class of the
        combination's rules (trimmed), or with *final* its first rule; NO_MATCH where
        no rule is left.  (node, cells, strides by field)"""
        trim = self.trimmer(frozenset(fields))
        strides = [0] * NFIELDS
        size = 1
        for f in reversed(fields):
            strides[f] = size
            size *= len(nodes[f].classes)
        table = array("I", [NO_MATCH]) * size
        ids: dict[int, int] = {b: i for i, b in enumerate(seed)}
        last = len(fields) - 1

        def walk(k: int, acc: int, base: int) -> None:
            f = fields[k]
            stride = strides[f]
            for i, b in enumerate(nodes[f].classes):
                x = acc & b
                if not x:
                    continue                # no rule left: the whole subtree is NO_MATCH
                if k < last:
                    walk(k + 1, x, base + i * stride)
                    continue
                x = trim(x)
                if final:
                    table[base + i * stride] = _lowest(x)
                    continue
                cid = ids.get(x)
                if cid is None:
                    cid = ids[x] = len(ids)
                table[base + i * stride] = cid
        walk(0, self.all, 0)
        return _Node(frozenset(fields), list(ids), CROSS_SLOT), table, strides

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

    def combine(self, A: _Node, B: _Node, slot: int, final: bool, cap: int,
                last: tuple | None = None):
        """The step combining A and B: its node and entries; None if more than *cap*.

        *last*: the same step of the compile this one is a change of (_Memo.steps).
        If B has the classes it had, and A those it had and perhaps more after them,
        their rows are the ones it made; only A's new classes get rows made here."""
        fields = A.fields | B.fields
        trim = self.trimmer(fields)
        ids: dict[int, int] = {}
        entries = []
        bcls = B.classes
        rows = A.classes
        if last is not None:
            la, lb, lentries, lout = last
            if B.classes == lb and A.classes[:len(la)] == la:
                entries = list(lentries)
                ids = {b: i for i, b in enumerate(lout)}
                rows = A.classes[len(la):]

        def value(inter: int) -> int:
            if final:
                return _lowest(inter)
            cid = ids.get(inter)
            if cid is None:
                cid = ids[inter] = len(ids)
            return cid
        first = len(A.classes) - len(rows)
        for i, (a, cand, row) in enumerate(self._candidates(A, B, rows), first):
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
        if len(entries) > cap:
            return None
        return _Node(fields, list(ids), slot), entries


def _similar(t: Tables, like: Tables) -> bool:
    """Whether *t*'s fields split into about as many classes as *like*'s did, so that
    *like*'s plan pairs them as well as a new search would (a changed rule or a few)."""
    return bool(like.plan) and all(
        abs(t.sizes[f] - like.sizes[f]) <= max(2, like.sizes[f] // 20) for f in FIELDS)


def compile_rules(rules: Sequence[Rule], limit: int = COMBINE_CAPACITY,
                  like: Tables | None = None, *, dense: int = DENSE_MAX // 2,
                  cross: bool = True) -> Tables:
    """Build the tables of one generation; SpecError when they would exceed *limit* entries.

    The fields with the fewest classes are crossed in one table (``cross``: at most
    CROSS_MAX cells, counted in *limit*; the fields of one class always among them), which takes the
    place of their combination steps; the rest is combined step by step.  The crossed
    plan is kept only if all its tables fit *dense* cells (the generation's half of
    the dense map): then every lookup of the packet is an array read, and fewer of
    them than the plan without it needs.  Else (or without *cross*) every field is
    combined step by step.

    *like*: the tables of a rule set this one is likely a small change of (the last one
    the node had).  If its fields split into as many classes, within 5%, its plan is
    followed instead of searched for: the search counts every candidate pair of every
    step and costs about a third of the compile.  The result is the same kind of
    tables, possibly a little larger; one that would take a fifth more entries than
    *like*'s, or break the limit, is compiled again with the search."""
    # A rule without any constraint ends the list: later rules never match, and "no
    # entry" in the tables then means "this rule" (an explicit default).
    t = Tables()
    given = rules
    for r in rules:
        if r.matches_all:
            t.catch_all = r.index
            rules = rules[:r.index]
            break
    prev = like.memo if like is not None else None
    keep = _reusable(rules, prev)
    if keep is None:
        prev = None
    c = _Compiler(rules, limit, prev)
    nodes = _phase0(c, t, keep or frozenset())
    t.actions = [r.action for r in rules]
    if not rules:
        # Nothing can match: a final step with no entries sends everything to the default.
        t.steps = [(0, 1, [])] + [(NFIELDS + s, NFIELDS + s, []) for s in range(NFIELDS - 2)]
        t.shapes = [(0, 0)] * len(t.steps)          # in the hash map: no entries at all
        return t
    _combine(c, t, nodes, limit, like, dense, cross)
    if prev is not None and t.memo is not None and t.memo.stale:
        # Changes upon changes left tables with unused classes: start afresh, on the plan.
        return compile_rules(given, limit, dataclasses.replace(like, memo=None),
                             dense=dense, cross=cross)
    return t


def _combine(c: _Compiler, t: Tables, nodes: list[_Node], limit: int, like: Tables | None,
             dense: int, cross: bool) -> None:
    """The combination of the fields into *t*: crossed where that plan fits, else on
    *like*'s plan where the rule set splits like it, else on the plan searched for."""
    fields = _cross_fields(nodes, like) if cross else ()
    if fields and _crossed(c, t, nodes, fields, limit, like, dense):
        return
    if like is not None and not like.cross and _similar(t, like) and \
            _steps(c, t, nodes, limit, like):
        return
    _steps(c, t, nodes, limit, None)


def _cross_fields(nodes: Sequence[_Node], like: Tables | None) -> tuple[int, ...]:
    """The fields to cross: those of one class (free), then the fewest-classed ones
    while their table stays within CROSS_MAX cells; () if that is fewer than two.  The
    fields *like* crossed, while they still fit, so that its plan can be followed."""
    if like is not None and like.cross and math.prod(
            len(nodes[f].classes) for f in like.cross) <= CROSS_MAX:
        return like.cross
    chosen, cells = [], 1
    for f in sorted(range(NFIELDS), key=lambda f: (len(nodes[f].classes), f)):
        cells *= len(nodes[f].classes)
        if cells > CROSS_MAX:
            break
        chosen.append(f)
    return tuple(sorted(chosen)) if len(chosen) >= 2 else ()


def _crossed(c: _Compiler, t: Tables, nodes: list[_Node], fields: tuple[int, ...],
             limit: int, like: Tables | None, dense: int) -> bool:
    """The plan with *fields* crossed into *t*; False (and *t* without it) when its
    tables would not all fit *dense* cells or break the limit."""
    rest = [nd for nd in nodes if nd.slot not in fields]
    if math.prod(len(nodes[f].classes) for f in fields) > limit:
        return False                         # its cells count as table entries too
    last = c.prev.cross if c.prev is not None and like is not None and \
        like.cross == fields else None
    node, table, strides = c.cross(nodes, fields, final=not rest, seed=last or ())
    if t.memo is not None:
        t.memo.cross = None if not rest else node.classes
        if last and _stale(node.classes, set(table) - {NO_MATCH}):
            t.memo.stale = True
    limit -= len(table)
    t.cross, t.cross_table, t.cross_strides = fields, table, strides
    t.sizes["cross"] = len(table)
    cells = len(table) + sum(len(a) for a in (t.src4_table, t.dst4_table) if a is not None)
    try:
        if not rest:
            t.plan, t.steps, t.shapes = [], [], []
            t.result = CROSS_SLOT
        elif not (like is not None and like.cross == fields and _similar(t, like) and
                  _steps(c, t, rest + [node], limit, like)):
            _steps(c, t, rest + [node], limit, None)
        cells += sum(rows * cols for rows, cols in t.shapes)
    except SpecError:
        cells = dense + 1                    # too complex this way: perhaps not the other
    if cells <= dense:
        return True
    t.cross, t.cross_table, t.cross_strides = (), None, [0] * NFIELDS
    del t.sizes["cross"]
    if t.memo is not None:
        t.memo.cross = None
    return False


def _phase0(c: _Compiler, t: Tables, keep: frozenset[int] = frozenset()) -> list[_Node]:
    """Each field's classes and lookup table into *t*; the fields' nodes.  With the
    compile this one is a change of (``c.prev``), the fields in *keep* are taken as
    it made them, the others start from the classes it had."""
    prev = c.prev
    made: dict[int, tuple] = {}
    memo = t.memo = _Memo(tuple(c.rules), c.wild, made)

    def field(f: int, make):
        if prev is not None and f in keep:
            made[f] = prev.fields[f]
            return made[f]
        seed = prev.fields[f][0].classes if prev is not None else ()
        made[f] = out = make(seed)
        if seed:
            memo.stale = memo.stale or _stale(out[0].classes, _classes_used(out))
        return out

    def address(f: int, attr: str, seed):
        node, v4, v6, noaddr = c.address(f, attr, seed)
        table = address_table(v4, DENSE_MAX // 2) if len(node.classes) > 1 else None
        return node, v4, v6, noaddr, table

    def proto_values(r):
        if r.proto == AH:               # AH itself, and anything behind an AH header
            return [(AH, AH), (VIA_AH, VIA_AH + 255)]
        return [(r.proto, r.proto), (VIA_AH + r.proto, VIA_AH + r.proto)]

    def flag_values(r):
        mask, want = r.tcp_flags
        return [(v, v) for v in range(256) if v & mask == want]

    sa, t.src4, t.src6, t.noaddr_src, t.src4_table = field(0, lambda s: address(0, "src", s))
    da, t.dst4, t.dst6, t.noaddr_dst, t.dst4_table = field(1, lambda s: address(1, "dst", s))
    pr, t.proto = field(2, lambda s: c.array(2, "proto", NPROTO, NO_PROTO, proto_values, s))
    sp, t.sport = field(3, lambda s: c.array(3, "sport", NPORT, NO_PORT, lambda r: r.sport, s))
    dp, t.dport = field(4, lambda s: c.array(4, "dport", NPORT, NO_PORT, lambda r: r.dport, s))
    fl, t.flags = field(5, lambda s: c.array(5, "tcp_flags", NFLAGS, NO_FLAGS, flag_values, s))
    vl, t.vlan = field(6, lambda s: c.array(6, "vlan", NVLAN, UNTAGGED, lambda r: r.vlan, s))
    nodes = [sa, da, pr, sp, dp, fl, vl]
    t.fixed = (FIXED_SRC if len(sa.classes) == 1 else 0) | (FIXED_DST if len(da.classes) == 1
                                                             else 0)
    t.sizes = {FIELDS[n.slot]: len(n.classes) for n in nodes}
    return nodes


def _steps(c: _Compiler, t: Tables, nodes: list[_Node], limit: int,
           like: Tables | None) -> bool:
    """The six combination steps into *t*, following *like*'s plan if given (False, and
    *t* without steps, when that would take a fifth more entries than *like*'s did or
    break the limit), else each step's partner searched for (SpecError past the limit)."""
    t.plan, t.steps, t.shapes = [], [], []
    for k in [k for k in t.sizes if k.startswith("step")]:
        del t.sizes[k]
    memo = t.memo
    if memo is not None:
        memo.steps = []
    lasts = c.prev.steps if c.prev is not None and like is not None and \
        like.memo is c.prev else []
    budget = limit if like is None else min(limit, like.combine_entries * 6 // 5 + 64)
    used = 0
    step = 0
    while len(nodes) > 1:
        final = len(nodes) == 2
        if like is not None:                  # the pair the plan names
            sides = like.plan[step]
            x = next(k for k, nd in enumerate(nodes) if nd.fields == sides[0])
            y = next(k for k, nd in enumerate(nodes) if nd.fields == sides[1])
            last = lasts[step] if step < len(lasts) else None
            done = c.combine(nodes[x], nodes[y], NFIELDS + step, final, budget - used, last)
            if done is None:
                return False                  # larger than like's: search instead
            n = len(done[1])
        else:
            n, x, y = _partner(c, nodes, limit - used)
            done = c.combine(nodes[x], nodes[y], NFIELDS + step, final, limit - used) \
                if used + n <= limit else None
        A, B = nodes[x], nodes[y]
        if done is None:
            names = lambda node: "+".join(FIELDS[f] for f in sorted(node.fields))
            n = max(n, limit - used + 1)
            raise SpecError(
                f"filter: rule set too complex: combining ({names(A)}) with "
                f"({names(B)}) needs {n} or more table entries on top of {used} already "
                f"used, over the limit max_table_entries={limit} ({len(c.rules)} rules; per-field "
                f"classes: {', '.join(f'{k}={v}' for k, v in t.sizes.items())}).  Split the "
                f"rules across two filter nodes or give rules fewer distinct field combinations")
        node, entries = done
        if memo is not None:
            memo.steps.append((A.classes, B.classes, entries, node.classes))
            if like is not None and not final and node.classes[:1] and \
                    _stale(node.classes, (v for _a, _b, v in entries)):
                memo.stale = True
        t.plan.append((A.fields, B.fields))
        t.steps.append((A.slot, B.slot, entries))
        t.shapes.append((len(A.classes), len(B.classes)))
        t.sizes[f"step{step}"] = len(entries)
        used += len(entries)
        nodes = [nd for k, nd in enumerate(nodes) if k not in (x, y)] + [node]
        del A, B
        step += 1
    t.result = NFIELDS + len(t.steps) - 1
    return True


def _partner(c: _Compiler, nodes: list[_Node], cap: int) -> tuple[int, int, int]:
    """The next step: grow the table with the most classes, with the partner (and on the
    side) that keeps the step smallest: the big field's classes get split by one small
    field at a time (a left-deep tree), instead of building a large cross product of
    small fields that every big class then pairs with.  (entries, left, right)."""
    big = max(range(len(nodes)), key=lambda k: len(nodes[k].classes))
    best = None
    for other in range(len(nodes)):
        if other == big:
            continue
        for x, y in ((big, other), (other, big)):      # which side holds the rows
            n = c.count(nodes[x], nodes[y], best[0] if best else cap)
            if best is None or n < best[0]:
                best = (n, x, y)
    assert best is not None
    return best


# ---- the dense map: IPv4 address tables and dense steps ---------------------------------------

def address_table(entries: Sequence[tuple[int, bytes, int]], limit: int) -> array | None:
    """The IPv4 prefixes *entries* (prefixlen, 4 address bytes, class) as the table
    bpf/filter.c reads an address's class from, one byte at a time: cell b of the 256
    at the root is the class of every address whose first byte is b, or DIR_NEXT | o:
    the second byte indexes the 256 cells at o, and so on (offsets from the root).
    Prefixes are laid down shortest first, so a longer one overwrites what it refines,
    and a new block of 256 starts as a copy of the cell it refines.  None if the
    table would take more than *limit* cells."""
    cells = array("I", [0]) * 256

    def block(cell: int) -> int:
        """The offset of the 256 cells under *cell*, made if it has none yet."""
        c = cells[cell]
        if c & DIR_NEXT:
            return c & ~DIR_NEXT
        off = len(cells)
        cells.extend(array("I", [c]) * 256)
        cells[cell] = DIR_NEXT | off
        return off

    for pl, addr, cls in sorted(entries, key=lambda e: e[0]):
        base, level = 0, 0
        while pl > 8 * (level + 1):        # the byte the prefix ends in
            base = block(base + addr[level])
            level += 1
            if len(cells) > limit:
                return None
        span = 1 << (8 * (level + 1) - pl)  # cells of that byte's level the prefix covers
        start = base + (addr[level] & ~(span - 1) & 0xFF)
        cells[start:start + span] = array("I", [cls]) * span
    return cells


@dataclass
class DenseLayout:
    """Where one generation's dense tables go in its half of `dense` (cells from the
    half's start): per step (offset, rows, stride) or None for a step left in the
    hash map, and the offset of each IPv4 address table, or None (the LPM trie)."""

    steps: list
    src4: int | None = None
    dst4: int | None = None
    cross: int | None = None        # the cross table's offset (it is always dense)
    used: int = 0                   # cells, from the half's start


def dense_layout(t: Tables, capacity: int) -> DenseLayout:
    """Lay *t*'s dense tables into *capacity* cells: the smallest first, so that as many
    lookups as fit are array reads (an address table saves an LPM trie walk, a step a
    hash lookup or two)."""
    items = [(len(tab), name) for name, tab in (("src4", t.src4_table), ("dst4", t.dst4_table))
             if tab is not None]
    items += [(rows * cols, s) for s, (rows, cols) in enumerate(t.shapes) if rows and cols]
    out = DenseLayout([None] * len(t.steps))
    used = 0
    if t.cross_table is not None:       # first: it has no other place
        if len(t.cross_table) > capacity:
            raise ValueError(f"filter: a cross table of {len(t.cross_table)} cells "
                             f"in {capacity}")
        out.cross, used = 0, len(t.cross_table)
    for size, what in sorted(items, key=lambda i: (i[0], str(i[1]))):
        if used + size > capacity:
            continue
        if isinstance(what, str):
            setattr(out, what, used)
        else:
            out.steps[what] = (used, *t.shapes[what])
        used += size
    out.used = used
    return out


def dense_cells(t: Tables, layout: DenseLayout) -> array:
    """The cells *layout* lays out: the address tables, and for each dense step a pair's
    entry, else its row default, else NO_MATCH (no rule: the default action), as in the
    hash map."""
    cells = array("I", [NO_MATCH]) * layout.used
    if layout.cross is not None and t.cross_table is not None:
        cells[layout.cross:layout.cross + len(t.cross_table)] = t.cross_table
    for off, table in ((layout.src4, t.src4_table), (layout.dst4, t.dst4_table)):
        if off is not None and table is not None:
            cells[off:off + len(table)] = table
    for (_l, _r, entries), lay in zip(t.steps, layout.steps):
        if lay is None:
            continue
        off, _rows, cols = lay
        for a, b, v in entries:
            if b == ROW_DEFAULT:
                start = off + a * cols
                cells[start:start + cols] = array("I", [v]) * cols
        for a, b, v in entries:
            if b != ROW_DEFAULT:
                cells[off + a * cols + b] = v
    return cells
