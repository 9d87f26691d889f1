"""The test-case file of a pipeline (``<pipeline>.test.yaml``) → ``CaseFile``: pure data.

Each case sends one packet, or a sequence of packets through the same loaded
pipeline (stateful NFs: NAT, LB), and says what must come out; docs/testing.md
documents every key::

    cases:
      - name: UDP is dropped
        packet: Ether()/IP(dst="10.0.0.2")/UDP(dport=53)
        expect: {verdict: drop, counters: {fw: {drop: 1}}}
      - name: web opens when the rule goes
        config: {fw: {rules: [{action: drop, proto: udp}]}}     # as `nfpipe rules`
        packet: [{Ether: {}}, {IP: {dst: 10.0.0.2}}, {TCP: {dport: 80, flags: S}}]
        expect: {verdict: pass, unchanged: true}

Reading collects every problem with its file:line:column (``CaseFileError``) and
builds every packet then, so a case file that reads runs.  ``check_against`` then
checks the cases against the pipeline they test (nodes, ports, outcomes, runtime
config the NF can take) before anything is loaded.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfpipe.catalog import SourceNF
from nfpipe.catalog.base import runtime_change
from nfpipe.errors import ConfigErrors, RuntimeChangeError, SpecError
from nfpipe.nfabi import OUTCOME_NAMES
from nfpipe.spec import PipelineSpec
from nfpipe.testing.e2e import CASE_KEYS as E2E_KEYS, EndToEnd, parse_end_to_end
from nfpipe.testing.packets import PacketError, build_packet, check_field_expectations
from nfpipe.yamldoc import Checker, Doc, Pos, Problem, ProblemsError, load_file

VERDICTS = ("pass", "drop", "tx", "redirect", "aborted")
TOP_KEYS = ("description", "cases")
CASE_KEYS = ("name", "description", "config", "maps", "packet", "expect", "packets") + \
    E2E_KEYS
STEP_KEYS = ("packet", "expect")
EXPECT_KEYS = ("verdict", "port", "path", "fields", "checksums", "output", "unchanged",
               "counters", "maps")
MAP_SET_KEYS = ("map", "key", "value", "delete")
MAP_EXPECT_KEYS = ("map", "key", "value", "absent", "entries")
#: what a node's counter may be named besides its ports (nfp_stats' outcome slots)
OUTCOMES = tuple(OUTCOME_NAMES.values())


class CaseFileError(ProblemsError):
    """Problems in one test-case file (or between it and its pipeline); ``problems``
    lists each with its position.  Bad input: exit code 2."""


@dataclass(frozen=True)
class MapWrite:
    """An entry written (or deleted) before a case's packets, as ``nfpipe map set`` and
    ``nfpipe map delete`` take it: key and value as JSON-like data, addresses as text."""

    map: str
    key: Any
    value: Any
    delete: bool
    pos: Pos


@dataclass(frozen=True)
class MapCheck:
    """An entry (or the entry count) a map must hold after a packet; ``value`` may name
    only some fields of a struct; per-CPU values are summed over CPUs."""

    map: str
    pos: Pos
    key: Any = None
    value: Any = None
    absent: bool = False
    entries: int | None = None


@dataclass(frozen=True)
class Expect:
    """What one packet must do; every expectation given has its own position."""

    pos: Pos
    verdict: str | None = None
    port: str | None = None                   # "port" or "node.port": the last hop's
    path: tuple[str, ...] | None = None       # every hop, "node.outcome"
    fields: dict[str, dict[str, Any]] | None = None
    checksums: bool = False
    output: bytes | None = None
    unchanged: bool = False
    counters: dict[str, dict[str, tuple[int, int | None]]] | None = None  # packets, bytes
    maps: tuple[MapCheck, ...] = ()
    positions: dict[str, Pos] = field(default_factory=dict, compare=False)

    def at(self, key: str) -> Pos:
        return self.positions.get(key, self.pos)


@dataclass(frozen=True)
class Step:
    """One packet of a case and what it must do."""

    index: int                     # 1-based
    packet: bytes
    source: str                    # as the file writes it, for messages
    expect: Expect
    pos: Pos


@dataclass(frozen=True)
class Case:
    name: str
    pos: Pos
    steps: tuple[Step, ...]
    config: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> runtime keys
    config_pos: dict[str, Pos] = field(default_factory=dict, compare=False)
    maps: tuple[MapWrite, ...] = ()
    description: str = ""
    e2e: EndToEnd | None = None     # an end-to-end case: topology, deploy, traffic


@dataclass(frozen=True)
class CaseFile:
    file: str
    cases: tuple[Case, ...]
    description: str = ""

    def select(self, patterns: list[str] | None) -> tuple[Case, ...]:
        """The cases whose name contains one of *patterns* (case-insensitive; none: all)."""
        if not patterns:
            return self.cases
        low = [p.lower() for p in patterns]
        return tuple(c for c in self.cases if any(p in c.name.lower() for p in low))


def default_cases_path(pipeline: str | os.PathLike) -> Path:
    """``examples/firewall.yaml`` → ``examples/firewall.test.yaml``."""
    p = Path(pipeline)
    stem = p.name[:-len(".yaml")] if p.name.endswith(".yaml") else p.stem
    return p.with_name(f"{stem}.test.yaml")


def load_cases(path: str | os.PathLike) -> CaseFile:
    """Read and check a test-case file (CaseFileError listing every problem)."""
    p = Path(path)
    if not p.is_file():
        raise CaseFileError([_problem(Pos(os.fspath(path), 1, 1), "no such test-case file "
                                      "(write one: see docs/testing.md)")])
    return parse_cases(load_file(os.fspath(path)))


def parse_cases(doc: Doc) -> CaseFile:
    parser = _Parser(doc)
    out = parser.parse()
    if parser.problems or out is None:
        raise CaseFileError(parser.problems)
    return out


def _problem(pos: Pos, message: str) -> Problem:
    return Problem(pos, message)


class _Parser(Checker):
    def parse(self) -> CaseFile | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.problem((), "a test-case file is a mapping with 'cases:' (see docs/testing.md)")
            return None
        self.known_keys((), data, TOP_KEYS, "a test-case file")
        if "cases" not in data:
            self.problem((), "missing 'cases:' (a list of cases)")
            return None
        items = data["cases"]
        if not self.expect(("cases",), items, list, "a list of cases") or not items:
            if items == []:
                self.problem(("cases",), "no cases: a test file needs at least one")
            return None
        cases, seen = [], {}
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, (str, int)) and str(name) in seen:
                self.problem(("cases", i, "name"), f"a second case named '{name}' (the "
                                                   f"first is at line {seen[str(name)].line})")
                continue
            if isinstance(name, (str, int)):
                seen[str(name)] = self.doc.at(("cases", i))
            case = self._case(("cases", i), item)
            if case is not None:
                cases.append(case)
        return CaseFile(self.doc.file, tuple(cases), str(data.get("description") or ""))

    def _case(self, path, item) -> Case | None:
        if not isinstance(item, dict):
            self.problem(path, f"a case is a mapping with name, packet(s) and expect; found "
                               f"{type(item).__name__}")
            return None
        before = len(self.problems)
        self.known_keys(path, item, CASE_KEYS, "a case")
        name = item.get("name")
        if name is None:
            self.problem(path, "a case needs a 'name'")
        elif not isinstance(name, (str, int)) or isinstance(name, bool) or not str(name).strip():
            self.problem(path + ("name",), "expected a case name (text)")
        steps: list[Step] = []
        e2e = None
        if "topology" in item:
            e2e = parse_end_to_end(self, path, item, os.path.dirname(self.doc.file) or ".")
        elif "deploy" in item or "traffic" in item:
            self.problem(path + ("deploy" if "deploy" in item else "traffic",),
                         "'deploy' and 'traffic' make an end-to-end case: give its "
                         "'topology' too", key=True)
        elif "packets" in item:
            if "packet" in item or "expect" in item:
                self.problem(path + ("packets",), "give either 'packet' and 'expect' (one "
                                                  "packet) or 'packets' (a sequence), not both",
                             key=True)
            seq = item["packets"]
            if self.expect(path + ("packets",), seq, list, "a list of {packet, expect}"):
                if not seq:
                    self.problem(path + ("packets",), "an empty sequence tests nothing")
                for j, s in enumerate(seq):
                    if not isinstance(s, dict):
                        self.problem(path + ("packets", j), "expected {packet: ..., expect: ...}")
                        continue
                    self.known_keys(path + ("packets", j), s, STEP_KEYS, "a packet of a case")
                    step = self._step(path + ("packets", j), s, j + 1)
                    if step:
                        steps.append(step)
        elif "packet" in item:
            step = self._step(path, item, 1)
            if step:
                steps.append(step)
        else:
            self.problem(path, "a case needs 'packet' (with 'expect') or 'packets', or "
                               "'topology' and 'traffic' (end to end)")
        config, config_pos = self._config(path + ("config",), item.get("config"))
        writes = self._map_writes(path + ("maps",), item.get("maps"))
        if len(self.problems) > before:
            return None
        return Case(str(name), self.doc.at(path), tuple(steps), config, config_pos,
                    tuple(writes), str(item.get("description") or ""), e2e)

    def _step(self, path, item, index: int) -> Step | None:
        if "packet" not in item:
            self.problem(path, "missing 'packet'")
            return None
        data = self._packet(path + ("packet",), item["packet"])
        if "expect" not in item:
            self.problem(path, "missing 'expect': a packet with no expectation tests nothing",
                         key=False)
            return None
        expect = self._expect(path + ("expect",), item["expect"])
        if data is None or expect is None:
            return None
        src = item["packet"]
        return Step(index, data, src if isinstance(src, str) else repr(src), expect,
                    self.doc.at(path + ("packet",)))

    def _packet(self, path, value) -> bytes | None:
        try:
            return build_packet(value)
        except PacketError as exc:
            self.problem(path + exc.path, exc.reason, key=bool(exc.path))
            return None

    def _expect(self, path, e) -> Expect | None:
        if not isinstance(e, dict) or not e:
            self.problem(path, f"expected a mapping of expectations ({', '.join(EXPECT_KEYS)})")
            return None
        self.known_keys(path, e, EXPECT_KEYS, "expect")
        kw: dict[str, Any] = {}
        if "verdict" in e:
            if e["verdict"] not in VERDICTS:
                self.problem(path + ("verdict",), f"expected one of {', '.join(VERDICTS)}, "
                                                  f"found {e['verdict']!r}")
            kw["verdict"] = e["verdict"]
        if "port" in e and self.expect(path + ("port",), e["port"], str,
                                       "a port name or node.port"):
            kw["port"] = e["port"]
        if "path" in e:
            hops = e["path"]
            if self.expect(path + ("path",), hops, list, "a list of node.outcome hops"):
                for j, h in enumerate(hops):
                    if not isinstance(h, str) or "." not in h:
                        self.problem(path + ("path", j), f"expected 'node.outcome' (fw.out, "
                                                         f"fw.drop), found {h!r}")
                kw["path"] = tuple(str(h) for h in hops)
        if "fields" in e:
            try:
                kw["fields"] = check_field_expectations(e["fields"])
            except PacketError as exc:
                self.problem(path + ("fields",) + exc.path, exc.reason, key=bool(exc.path))
        if "checksums" in e:
            if e["checksums"] != "valid":
                self.problem(path + ("checksums",), f"the one value is 'valid' (every "
                                                    f"checksum recomputed by scapy), found "
                                                    f"{e['checksums']!r}")
            kw["checksums"] = True
        if "output" in e:
            kw["output"] = self._packet(path + ("output",), e["output"])
        if "unchanged" in e and self.expect(path + ("unchanged",), e["unchanged"], bool,
                                            "true or false"):
            kw["unchanged"] = e["unchanged"]
        if "counters" in e:
            kw["counters"] = self._counters(path + ("counters",), e["counters"])
        if "maps" in e:
            kw["maps"] = tuple(self._map_checks(path + ("maps",), e["maps"]))
        positions = {k: self.doc.at(path + (k,), key=True) for k in e}
        return Expect(self.doc.at(path), positions=positions, **kw)

    def _counters(self, path, value) -> dict[str, dict[str, tuple[int, int | None]]]:
        out: dict[str, dict[str, tuple[int, int | None]]] = {}
        if not self.expect(path, value, dict, "{node: {outcome: packets}}"):
            return out
        for node, row in value.items():
            if not self.expect(path + (node,), row, dict, "{outcome: packets}"):
                continue
            out[str(node)] = {}
            for outcome, n in row.items():
                p = path + (node, outcome)
                if isinstance(n, dict):
                    self.known_keys(p, n, ("packets", "bytes"), "a counter")
                    pk, by = n.get("packets"), n.get("bytes")
                else:
                    pk, by = n, None
                ok = all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
                         for v in (pk, by))
                if not ok or (pk is None and by is None):
                    self.problem(p, f"expected a packet count or {{packets: N, bytes: M}}, "
                                    f"found {n!r}")
                    continue
                out[str(node)][str(outcome)] = (pk, by)
        return out

    def _map_checks(self, path, value) -> list[MapCheck]:
        out: list[MapCheck] = []
        if not self.expect(path, value, list, "a list of {map, key, value}"):
            return out
        for j, m in enumerate(value):
            p = path + (j,)
            if not self.expect(p, m, dict, "{map, key, value | absent: true} or "
                                           "{map, entries: N}"):
                continue
            self.known_keys(p, m, MAP_EXPECT_KEYS, "a map expectation")
            if not isinstance(m.get("map"), str):
                self.problem(p, "missing 'map' (its full name: fw__hits, nat__conns, ...)")
                continue
            if "entries" in m:
                n = m["entries"]
                if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                    self.problem(p + ("entries",), f"expected a number of entries, found {n!r}")
                    continue
                if "key" in m:
                    self.problem(p + ("key",), "'entries' counts the whole map: no 'key'",
                                 key=True)
                out.append(MapCheck(m["map"], self.doc.at(p), entries=n))
                continue
            if "key" not in m or ("value" in m) == bool(m.get("absent")):
                self.problem(p, "give 'key' and either 'value' or 'absent: true' (or "
                                "'entries: N')")
                continue
            out.append(MapCheck(m["map"], self.doc.at(p), key=m["key"],
                                value=m.get("value"), absent=bool(m.get("absent"))))
        return out

    def _map_writes(self, path, value) -> list[MapWrite]:
        out: list[MapWrite] = []
        if value is None:
            return out
        if not self.expect(path, value, list, "a list of {map, key, value}"):
            return out
        for j, m in enumerate(value):
            p = path + (j,)
            if not self.expect(p, m, dict, "{map, key, value} or {map, key, delete: true}"):
                continue
            self.known_keys(p, m, MAP_SET_KEYS, "a map entry")
            if not isinstance(m.get("map"), str) or "key" not in m or \
                    ("value" in m) == bool(m.get("delete")):
                self.problem(p, "give 'map', 'key' and either 'value' or 'delete: true'")
                continue
            out.append(MapWrite(m["map"], _hex_arg(m["key"]), _hex_arg(m.get("value")),
                                bool(m.get("delete")), self.doc.at(p)))
        return out

    def _config(self, path, value) -> tuple[dict[str, dict[str, Any]], dict[str, Pos]]:
        if value is None:
            return {}, {}
        if not self.expect(path, value, dict, "{node: {runtime config}}"):
            return {}, {}
        out, pos = {}, {}
        for node, cfg in value.items():
            if self.expect(path + (node,), cfg, dict, f"node '{node}''s runtime config keys "
                                                      f"(rules, vips, forwards, ...)"):
                out[str(node)] = copy.deepcopy(cfg)
                pos[str(node)] = self.doc.at(path + (node,), key=True)
        return out, pos


def _hex_arg(value: Any) -> Any:
    """A ``0x...`` string is raw bytes, as ``nfpipe map`` takes it on the command line."""
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return value
    return value


# --- against the pipeline -----------------------------------------------------------------

def check_against(cases: CaseFile, spec: PipelineSpec) -> None:
    """Every node, port and outcome the cases name exists in *spec*, and every runtime
    config is one its NF takes live (CaseFileError listing every problem)."""
    problems = []

    def bad(pos: Pos, message: str) -> None:
        problems.append(_problem(pos, message))

    for case in cases.cases:
        for node, cfg in case.config.items():
            for msg in runtime_config_problems(spec, node, cfg):
                bad(case.config_pos[node], f"case '{case.name}': config: {msg}")
        for step in case.steps:
            e = step.expect
            for hop in (e.path or ()):
                msg = _hop_problem(spec, hop)
                if msg:
                    bad(e.at("path"), f"case '{case.name}': path: {msg}")
            if e.port is not None and "." in e.port:
                msg = _hop_problem(spec, e.port)
                if msg:
                    bad(e.at("port"), f"case '{case.name}': port: {msg}")
            for node, row in (e.counters or {}).items():
                for outcome in row:
                    msg = _hop_problem(spec, f"{node}.{outcome}")
                    if msg:
                        bad(e.at("counters"), f"case '{case.name}': counters: {msg}")
    if problems:
        raise CaseFileError(problems)


def _hop_problem(spec: PipelineSpec, hop: str) -> str | None:
    node, _, outcome = hop.partition(".")
    n = spec.nodes.get(node)
    if n is None:
        return f"no node '{node}' in pipeline '{spec.name}' (nodes: {', '.join(spec.nodes)})"
    if outcome not in n.ports and outcome not in OUTCOMES:
        return (f"node '{node}' has no outcome '{outcome}' (its ports: {', '.join(n.ports)}; "
                f"verdicts: {', '.join(OUTCOMES)})")
    return None


def runtime_config_problems(spec: PipelineSpec, node: str, config: Mapping[str, Any]
                            ) -> list[str]:
    """Why *config* cannot replace node *node*'s runtime config, as ``nfpipe rules`` /
    ``nfpipe backends`` would refuse it on the deployed pipeline (deploy.configure): a
    node without runtime config, a key that is not one, an invalid config, a port the
    pipeline does not wire."""
    n = spec.nodes.get(node)
    if n is None:
        return [f"no node '{node}' in pipeline '{spec.name}' (nodes: {', '.join(spec.nodes)})"]
    impl = n.impl
    wired = {n.ports[i] for e in spec.edges if e.src == node
             and (i := n.port_index(e.port)) is not None}
    try:
        runtime_change(SourceNF if impl is None else type(impl), n.nf, node,
                       impl.config if impl is not None else {}, config, wired)
    except RuntimeChangeError as exc:
        return [str(exc)]
    except ConfigErrors as exc:
        return [f"{n.nf} node '{node}': {e.reason}" for _p, e in exc.errors]
    except SpecError as exc:
        return [f"{n.nf} node '{node}': {exc.reason}"]
    return []


def merged_config(old: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """The node's config with the runtime keys *change* names replaced (the others kept),
    as ``deploy.configure`` merges it."""
    return copy.deepcopy({**old, **change})
