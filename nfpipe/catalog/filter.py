"""The filter NF: ordered first-match rules, classified in constant time.

Config (a node's ``config:`` in the pipeline YAML)::

    default: allow            # allow | drop | port:N   (no rule matched)
    fragments: l3             # l3 | allow | drop | port:N   (non-first fragments)
    malformed: drop           # allow | drop | port:N   (truncated or inconsistent headers)
    max_table_entries: 1048576
    classifier: auto          # auto | linear | tables | compiled
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
``auto`` and ``compiled`` (``filter_compiled``) also build the linear entries a node
is built with into its program as straight-line checks against constants, taken
while the active generation holds those entries (``gens[g].compiled_id``, their
fingerprint): an ``auto`` node whose rules change at runtime runs the scan of the
new ones until a deploy builds them in; a ``compiled`` node's rules change only by a
new program (``nfpipe deploy`` swaps it in); its policies still change live.
See docs/nf/filter.md for the map layout and the update protocol.  The rule
language and the constants shared with bpf/filter.c are in ``filter_rules``, the
table compiler in ``filter_rfc``; this module is the NF, its linear classifier and
its reference model.
"""
from __future__ import annotations

import functools
import operator
import struct
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

from nfpipe.catalog import parse as P
from nfpipe.catalog.base import NetworkFunction, NodeMaps
from nfpipe.catalog.filter_compiled import (
    HINT as COMPILED_HINT,
    compiled_checks,
    compiled_defines,
)
from nfpipe.catalog.filter_rfc import (
    DenseLayout,
    Tables,
    compile_rules,
    dense_cells,
    dense_layout,
)
from nfpipe.catalog.filter_rules import (  # noqa: F401 (action_text, ROW_DEFAULT: the API)
    AH,
    CLASSIFIERS,
    COMBINE_CAPACITY,
    DENSE_CHUNK,
    DIR_NONE,
    FRAG_L3,
    LIN_MAX,
    MAX_RULES,
    N_DPORT,
    N_DST4,
    N_DST6,
    N_FLAGS,
    N_PROTO,
    N_SPORT,
    N_SRC4,
    N_SRC6,
    N_VLAN,
    NFIELDS,
    NO_MATCH,
    POLICY_KEYS,
    PORTS,
    ROW_DEFAULT,
    STAT_NAMES,
    VIA_AH,
    Rule,
    action_text,
    parse_action,
    parse_rule,
)
from nfpipe.errors import ConfigErrors, KernelError, RuntimeChangeError, SpecError
from nfpipe.kernel import syscall as sc
from nfpipe.kernel.sync import GracePeriod, rcu_barrier
from nfpipe.nfabi import Verdict

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


#: rule sets compiled lately (their parsed rules, limit, Tables), the newest last: a
#: runtime change compiles its rule set to check it (prepare), and a repair or a second
#: look builds the Filter again from the manifest's copy.  The next rule set compiled
#: follows the one most like it (compile_rules' *like*: its plan, and its fields and
#: step rows where the rules left them alone), so a process that changes nodes' rules
#: again and again (the agent, a test, the bench) compiles each change as a change.
#: Found by comparing the rule tuples: one identity test a rule when both are the
#: parse cache's (hashing 10k Rules took 20 ms).  A few: a 10k-rule Tables holds
#: megabytes.
_compiled: list[tuple[tuple[Rule, ...], int, Tables]] = []
_COMPILED_KEPT = 3


def _like(rules: tuple[Rule, ...], limit: int) -> Tables | None:
    """Of the rule sets compiled lately with *limit*, the one most like *rules*: as
    many rules, and the most of them the same Rule objects in the same places."""
    mine = [(r, t) for r, lim, t in _compiled if lim == limit]   # oldest first
    alike = [(r, t) for r, t in mine if len(r) == len(rules)]
    if len(alike) > 1:                  # ties go to the newest
        return max(reversed(alike), key=lambda rt: sum(map(operator.is_, rt[0], rules)))[1]
    return (alike or mine)[-1][1] if mine else None


#: rule lists parsed lately, by their text: a check and a repair read the same list
#: again (10k rules: 50-100 ms to parse)
_parsed: dict[str, tuple[Rule, ...]] = {}
_PARSED_KEPT = 4

#: the lists parsed (or found in _parsed) lately, the newest last: their keys, rule
#: texts and rules.  A changed rule set is mostly the rules of one of them (its node's
#: last), each where it was: a rule whose text is one of theirs in the same place is
#: that Rule, and only the others are parsed
_recent_rules: list[tuple[str, list[str], Sequence[Rule]]] = []
_RECENT_KEPT = 4


def _remember(key: str, texts: list[str], rules: Sequence[Rule]) -> None:
    for n, (k, _t, _r) in enumerate(_recent_rules):
        if k == key:
            _recent_rules.append(_recent_rules.pop(n))
            return
    _recent_rules.append((key, texts, tuple(rules)))
    del _recent_rules[:-_RECENT_KEPT]


def _rule_text(raw: Any) -> str:
    """A rule's text, what the parse caches know it by: its repr.  A config is plain
    data (YAML's, JSON's, or the same built by a caller), whose repr tells apart what
    == does not (``True`` from ``1``, ``1.0`` from ``1``); mappings alike but for
    their keys' order only miss the cache.  A fifth of the time of sorted JSON."""
    return repr(raw)


def _parse_rules(rules: Sequence[Any]) -> list[Rule]:
    """*rules* parsed (ConfigErrors naming every bad rule, not only the first)."""
    texts = [_rule_text(r) for r in rules]
    key = "\n".join(texts)
    hit = _parsed.get(key)
    if hit is not None:
        _remember(key, texts, hit)
        return list(hit)
    recent = [(t, r) for _k, t, r in reversed(_recent_rules)]
    out, errors = [], []
    for i, (r, text) in enumerate(zip(rules, texts)):
        rule = None
        for seen, parsed in recent:
            if i < len(seen) and seen[i] == text:
                rule = parsed[i]
                break
        if rule is not None:
            out.append(rule)
            continue
        try:
            out.append(parse_rule(i, r))
        except SpecError as exc:
            errors.append((("rules", i), exc))
    if errors:
        raise ConfigErrors(errors)
    while len(_parsed) >= _PARSED_KEPT:
        del _parsed[next(iter(_parsed))]
    _parsed[key] = tuple(out)
    _remember(key, texts, out)
    return out


# ---- the NF ------------------------------------------------------------------------------------

class Filter(NetworkFunction):
    """Ordered first-match packet filter (see the module docstring for the config)."""

    kind = "filter"
    source_name = "filter.c"
    ports = PORTS
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
        self.rules = _parse_rules(rules)
        self._tables: Tables | None = None
        self.linear: list[dict] | None = None
        if classifier != "tables":
            self.linear = linear_entries(self.rules)
            if self.linear is None and classifier in ("linear", "compiled"):
                raise SpecError(f"filter: classifier: {classifier} holds at most {LIN_MAX} "
                                f"entries (one per combination of a rule's sport, dport and "
                                f"vlan ranges); these rules need more: use auto or tables")
        # The linear entries as compiled checks and their fingerprint (gens' compiled_id):
        # built into the program too under auto and compiled (auto: the rule set it is
        # built with; a runtime change to other rules runs the scan).
        self._checks = compiled_checks(self.linear) if self.linear is not None else None

    @property
    def tables(self) -> Tables:
        if self._tables is None:
            rules, limit = tuple(self.rules), self.max_table_entries
            found = next((n for n, (r, lim, _t) in enumerate(_compiled)
                          if lim == limit and r == rules), None)
            if found is not None:
                entry = _compiled.pop(found)
            else:
                entry = (rules, limit, compile_rules(self.rules, limit, _like(rules, limit)))
            _compiled.append(entry)
            del _compiled[:-_COMPILED_KEPT]
            self._tables = entry[2]
        return self._tables

    @functools.cached_property
    def _catch_all(self) -> int | None:
        """The index of the first rule that matches every packet (the rules after it
        never match), or None."""
        return next((r.index for r in self.rules if r.matches_all), None)

    def prepare(self) -> None:
        if self.linear is None:
            self.tables                      # noqa: B018 (compiled when first read)

    def model(self) -> FilterModel:
        return FilterModel(self)

    def build_defines(self) -> dict[str, str]:
        """The rules as the C its program is built with (none for the tables)."""
        if self._checks is None or self.classifier not in ("auto", "compiled"):
            return {}
        return compiled_defines(*self._checks)

    # --- maps -------------------------------------------------------------------------------

    def used_ports(self) -> tuple[str, ...]:
        """Port 0 and the ports a rule, the default or a policy sends packets to."""
        actions = [0, self.default, self.fragments, self.malformed] + [r.action for r in self.rules]
        used = {a for a in actions if a != FRAG_L3 and 0 <= a < len(self.ports)}
        return tuple(p for i, p in enumerate(self.ports) if i in used)

    def populate(self, maps: NodeMaps) -> None:
        self.install(maps)

    # --- offload ----------------------------------------------------------------------------

    def offload_defines(self, max_entries: int | None) -> dict[str, str]:
        """The offload flavour of filter.c (NFP_OFFLOAD: the linear classifier only) with
        its geometry sized to a device whose maps hold *max_entries* entries."""
        lin, rules = offload_geometry(max_entries)
        return {"NFP_FILTER_LIN_MAX": str(lin), "NFP_FILTER_MAX_RULES": str(rules)}

    def offload_problems(self, max_entries: int | None) -> list[str]:
        problem = self._capacity_problem(*offload_geometry(max_entries))
        return [problem] if problem else []

    def check_fits(self, maps: NodeMaps) -> None:
        """Refuse (SpecError, nothing written) a rule set the node's maps cannot hold: an
        offloaded filter has linear entries only, as many as its device gave it."""
        lin_max, max_rules, tables = _geometry(maps)
        problem = None if tables else self._capacity_problem(lin_max, max_rules)
        if problem:
            raise SpecError(f"filter: {problem}")

    def _capacity_problem(self, lin_max: int, max_rules: int) -> str | None:
        """Why this rule set does not fit a filter of linear entries only (*lin_max* per
        generation, rule indexes below *max_rules*), or None."""
        where = (f"an offloaded filter holds {lin_max} linear entr"
                 f"{'y' if lin_max == 1 else 'ies'} and {max_rules} rule"
                 f"{'' if max_rules == 1 else 's'} per generation (the device's map size; "
                 f"no RFC tables)")
        if self.classifier == "tables":
            return f"classifier: tables cannot be offloaded: {where}"
        lin = self.linear if self.linear is not None and len(self.linear) <= lin_max else None
        if lin is None:
            need = ("more than " + str(LIN_MAX) if self.linear is None else
                    str(len(self.linear)))
            return (f"{len(self.rules)} rule{'' if len(self.rules) == 1 else 's'} need "
                    f"{need} linear entries (one per combination of a rule's sport, dport and "
                    f"vlan ranges); {where}")
        if len(self.rules) > max_rules:
            return f"{len(self.rules)} rules; {where}"
        return None

    runtime_keys = config_keys           # everything: rules and policies live in maps
    map_keys = runtime_keys

    @classmethod
    def live_keys(cls, config: Mapping[str, Any]) -> frozenset[str]:
        """A compiled node's rules are in its program: only its policies change live."""
        return POLICY_KEYS if config.get("classifier") == "compiled" else cls.runtime_keys

    def update(self, maps: NodeMaps, config: Mapping[str, Any]) -> None:
        new = self.update_rules(maps, config)
        self.__dict__.clear()                   # nothing cached of the old rules stays
        self.__dict__.update(new.__dict__)

    def update_rules(self, maps: NodeMaps, config: Mapping[str, Any]) -> Filter:
        """Replace the whole config (rules and policies) while traffic flows; returns the
        new Filter.  Each packet sees either the old or the new rule set."""
        new = Filter(config)
        self._changes_to(maps, self.config, new)
        return new

    @classmethod
    def change_live(cls, maps: NodeMaps, old_config: Mapping[str, Any], old_state: Any,
                    config: Mapping[str, Any], new: NetworkFunction | None = None) -> Any:
        """The new rule set written into the inactive generation, then made active: the
        old config is only asked whether its program has rules compiled in (its 10,000
        rules are not parsed again)."""
        del old_state                           # a filter keeps none
        cls._changes_to(maps, old_config, new if isinstance(new, Filter) else Filter(config))
        return None

    @classmethod
    def _changes_to(cls, maps: NodeMaps, old_config: Mapping[str, Any], new: Filter) -> None:
        fixed = cls.built_in(old_config, new.config, new.changed_keys(old_config))
        if fixed:                 # the running program has them compiled in
            raise RuntimeChangeError(
                f"filter node '{maps.instance}': {', '.join(sorted(fixed))} cannot change at "
                f"runtime: a 'classifier: compiled' node has its rules in its program",
                node=maps.instance, hint=COMPILED_HINT)
        new.install(maps)

    def install(self, maps: NodeMaps) -> int:
        """Write this config into the inactive generation, then make it active.  Returns
        the generation now active."""
        lin_max, max_rules, _tables = _geometry(maps)
        self.check_fits(maps)
        lin = self.linear
        t = self.tables if lin is None else None   # compile first: a SpecError changes nothing
        active = maps["active"]
        gens = maps["gens"]
        cur = active[0] & 1
        new = cur ^ 1
        # Packets that read `new` before the previous flip may still run: wait for them
        # (on the grace period begun at that flip, when this process made it).
        key = active.id
        begun = _after_flip.pop(key, None)
        if begun is not None:
            begun.wait()
        else:
            rcu_barrier()
        half = 0
        local = None                          # the dense tables, in the generation's half
        # A program built before the cross table (its `gens` without one) runs six steps.
        crosses = "cross_cells" in getattr(gens.value_codec, "keys", ())
        if t is not None:
            half = maps["dense"].max_entries // 2 * DENSE_CHUNK      # cells
            if t.cross_table is not None and (not crosses or len(t.cross_table) > half):
                t = compile_rules(self.rules, self.max_table_entries, dense=half, cross=False)
            local = dense_layout(t, half)
        gens[new] = self._gen_value(t, 0, max_rules, local, new * half, crosses)
        if lin is not None:
            self._install_linear(maps, new, lin, lin_max, max_rules)
            gens[new] = self._gen_value(t, 1, max_rules, local, new * half, crosses)
            active[0] = new
            _flipped(key)
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
            self._reset_hits(maps, new, max_rules)
        assert local is not None
        for name, fmt, entries, table in (("src4", "<IB4s3x", t.src4, local.src4),
                                          ("dst4", "<IB4s3x", t.dst4, local.dst4),
                                          ("src6", "<IB16s3x", t.src6, None),
                                          ("dst6", "<IB16s3x", t.dst6, None)):
            if table is not None:
                continue                      # an address table in `dense` instead
            _batch(maps[name], [struct.pack(fmt, 8 + pl, new, a) for pl, a, _c in entries],
                   [struct.pack("<I", c) for _pl, _a, c in entries])
        keys, values = [], []
        for step, (_l, _r, entries) in enumerate(t.steps):
            if local.steps[step] is not None:
                continue                      # a dense step: written below
            gs = new << 8 | step
            keys += [struct.pack("<III", gs, a, b) for a, b, _v in entries]
            values += [struct.pack("<I", v) for _a, _b, v in entries]
        _batch(comb, keys, values)
        cells = dense_cells(t, local)
        cells.extend([NO_MATCH] * (-len(cells) % DENSE_CHUNK))      # whole elements
        _write_packed(maps["dense"], new * half // DENSE_CHUNK, cells,
                      len(cells) // DENSE_CHUNK)
        gens[new] = self._gen_value(t, 1, max_rules, local, new * half, crosses)
        active[0] = new                       # the flip: one 4-byte store
        _flipped(key)
        return new

    def _install_linear(self, maps: NodeMaps, gen: int, lin: list[dict], lin_max: int,
                        max_rules: int) -> None:
        m = maps["lin"]
        for i, e in enumerate(lin):
            m[gen * lin_max + i] = e
        self._reset_hits(maps, gen, max_rules)

    def _reset_hits(self, maps: NodeMaps, gen: int, max_rules: int) -> None:
        n = len(self.rules)
        if n:
            h = maps["hits"]
            size = 8 * (sc.possible_cpus() if h.percpu else 1)
            try:                              # keys and values packed in C
                sc.map_update_batch_packed(h.fd, array("I", range(gen * max_rules,
                                                                  gen * max_rules + n)).tobytes(),
                                           bytes(size * n), n)
            except KernelError as exc:
                if exc.errno not in _NO_BATCH:
                    raise
                _batch(h, [struct.pack("<I", gen * max_rules + i) for i in range(n)],
                       [bytes(size)] * n)

    def _gen_value(self, t: Tables | None, ready: int, max_rules: int,
                   layout: DenseLayout | None = None, base: int = 0,
                   crosses: bool = True) -> dict:
        """A generation's `gens` value; *layout*'s offsets are from cell *base* of `dense`
        (the start of the generation's half).  Without *crosses* (a program built before
        the cross table) it has no cross table and always six steps."""
        catch_all = self._catch_all
        dflt = self.default if catch_all is None else self.rules[catch_all].action
        drule = max_rules if catch_all is None else catch_all
        value = {"default_action": dflt, "default_rule": drule,
                 "fragment_action": self.fragments, "malformed_action": self.malformed,
                 "ready": ready}
        if t is None:
            assert self.linear is not None and self._checks is not None
            return {**value, "linear": 1, "nlin": len(self.linear),
                    "compiled_id": self._checks[1]}
        left = bytes(s[0] for s in t.steps).ljust(8, b"\0")
        right = bytes(s[1] for s in t.steps).ljust(8, b"\0")
        assert layout is not None
        dense = [(base + lay[0], lay[1], lay[2]) if lay else (0, 0, 0) for lay in layout.steps]
        dense += [(0, 0, 0)] * (NFIELDS - 1 - len(dense))
        if crosses:
            cross = t.cross_table
            value.update(cross_base=0 if layout.cross is None else base + layout.cross,
                         cross_cells=0 if cross is None else len(cross),
                         cross_stride=t.cross_strides, nsteps=len(t.steps), result=t.result)
        return {**value, "noaddr_src": t.noaddr_src, "noaddr_dst": t.noaddr_dst, "left": left,
                "right": right, "linear": 0, "nlin": 0, "fixed": t.fixed,
                "dense_base": [d[0] for d in dense], "dense_rows": [d[1] for d in dense],
                "dense_stride": [d[2] for d in dense],
                "dir_src": DIR_NONE if layout.src4 is None else base + layout.src4,
                "dir_dst": DIR_NONE if layout.dst4 is None else base + layout.dst4,
                "compiled_id": 0}

    # --- counters ----------------------------------------------------------------------------

    @staticmethod
    def active_generation(maps: NodeMaps) -> int:
        return maps["active"][0] & 1

    def hits(self, maps: NodeMaps) -> list[int]:
        """Packets per rule (summed over CPUs) since this rule set became active."""
        gen = self.active_generation(maps)
        _lin_max, max_rules, _tables = _geometry(maps)
        h = maps["hits"]
        return [_total(h[gen * max_rules + i]) for i in range(len(self.rules))]

    @staticmethod
    def stats(maps: NodeMaps) -> dict[str, int]:
        s = maps["stats"]
        out = {}
        for i, name in enumerate(STAT_NAMES):
            try:
                out[name] = _total(s[i])
            except KeyError:     # past the end of an offloaded map the device sized down
                out[name] = 0
        return out


#: per `active` map (by id): the grace period begun at its last generation switch
_after_flip: dict[int, GracePeriod] = {}


def _flipped(key: int) -> None:
    while len(_after_flip) >= 64:
        del _after_flip[next(iter(_after_flip))]
    _after_flip[key] = GracePeriod()


def offload_geometry(max_entries: int | None) -> tuple[int, int]:
    """(linear entries, rules) per generation of the offload flavour for a device whose
    maps hold at most *max_entries* entries (None: no known limit): both generations
    fit in one map, the rule count a power of two (filter.c masks rule indexes)."""
    if not isinstance(max_entries, int) or isinstance(max_entries, bool):
        return LIN_MAX, MAX_RULES
    per_gen = max(1, max_entries // 2)
    return min(LIN_MAX, per_gen), min(MAX_RULES, 1 << (per_gen.bit_length() - 1))


def _geometry(maps: NodeMaps) -> tuple[int, int, bool]:
    """(linear entries, rules per generation, has the RFC tables) of a loaded filter,
    from its maps (the offload build sizes them to the device)."""
    return (maps["lin"].max_entries // 2, maps["hits"].max_entries // 2,
            "combine" in maps)


def _total(value) -> int:
    """A counter's value: summed over CPUs, or one shared (offloaded) counter."""
    return sum(value) if isinstance(value, list) else int(value)


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


def _write_packed(m, base: int, values: array, count: int) -> None:
    """Elements base.. base + count - 1 of an array map from *values* (``array('I')``
    laid end to end: each element's value is ``len(values) // count`` words): one copy
    into a mappable array's memory, else batches."""
    if count:
        m.write_run(base, memoryview(values).cast("B"), count)


def _write_array(m, base: int, table: Sequence[int]) -> None:
    """Slots base.. of a u32 array map (a phase-0 field table, the rules' actions)."""
    values = table if isinstance(table, array) else array("I", table)
    try:
        _write_packed(m, base, values, len(values))
    except KernelError as exc:
        if exc.errno not in _NO_BATCH:
            raise
        for i, v in enumerate(values):
            sc.map_update_elem(m.fd, struct.pack("<I", base + i), struct.pack("<I", v), 0)


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

