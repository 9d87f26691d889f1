"""The pipeline file: YAML → ``PipelineSpec`` (pure data, every part with its position).

The format is documented in docs/pipeline-format.md.  Parsing collects every
problem it can find (``Problem`` with file:line:column) instead of stopping at
the first; ``parse_pipeline`` raises one ``SpecError`` listing them all, and
``nfpipe validate`` prints them.  Graph-level checks (cycles, reachability,
unwired ports, depth) are in ``nfpipe.graph``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfpipe.catalog import SourceNF, get as catalog_nf
from nfpipe.errors import ConfigErrors, SpecError
from nfpipe.nfabi import MAX_NODES, MAX_PORTS, PIPELINE_HOOKS, check_instance_name, nf_hook
from nfpipe.yamldoc import Checker, Doc, Pos, Problem, ProblemsError, describe, load, load_file

HOOKS = PIPELINE_HOOKS
MODES = {"xdp": ("auto", "native", "generic", "offload"),
         "tc-ingress": ("auto", "tcx", "clsact"),
         "tc-egress": ("auto", "tcx", "clsact")}
LINKINGS = ("auto", "tailcall", "fused")
VERDICTS = ("pass", "drop", "tx", "aborted", "redirect")
TOP_KEYS = ("pipeline", "description", "hook", "interfaces", "mode", "linking", "entry",
            "nodes", "edges")
NODE_KEYS = ("id", "nf", "config", "ports", "description")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_EDGE_RE = re.compile(r"^\s*(?P<src>[^\s>-][^\s]*?)\s*->\s*(?P<dst>\S+)\s*$")


@dataclass
class NodeSpec:
    id: str
    nf: str                         # as written: a catalog name or a path to a C file
    kind: str                       # catalog kind, or "c" for a user's C file
    source: Path | None             # the C file (catalog NFs: their file under bpf/)
    config: dict[str, Any]
    ports: tuple[str, ...]
    pos: Pos
    impl: Any = field(default=None, repr=False, compare=False)   # the NetworkFunction
    path: tuple = field(default=(), compare=False)   # where it is in the file ("nodes", i)

    @property
    def required_ports(self) -> tuple[str, ...]:
        """Ports that must be wired: those the configured NF can send packets to (none
        when its NF is unknown or its config invalid: that is the problem to report)."""
        if self.impl is None:
            return ()
        used = set(self.impl.used_ports())
        return tuple(p for p in self.ports if p in used)

    def port_index(self, name: str) -> int | None:
        if name.isdigit():
            i = int(name)
            return i if i < len(self.ports) else None
        return self.ports.index(name) if name in self.ports else None


@dataclass
class EdgeSpec:
    src: str
    port: str                       # port name as written ("out" when omitted)
    target: str                     # a node id, or a verdict
    pos: Pos
    verdict: str | None = None      # pass / drop / tx / aborted / redirect
    redirect_iface: str | None = None

    @property
    def is_verdict(self) -> bool:
        return self.verdict is not None

    def __str__(self) -> str:
        tgt = self.target if not self.redirect_iface else f"redirect:{self.redirect_iface}"
        return f"{self.src}.{self.port} -> {tgt}"


@dataclass
class PipelineSpec:
    name: str
    hook: str
    interfaces: list[str]
    mode: str
    linking: str
    entry: str
    nodes: dict[str, NodeSpec]
    edges: list[EdgeSpec]
    file: str
    description: str = ""
    doc: Doc | None = field(default=None, repr=False, compare=False)
    # what works but is probably not meant (an LB table too small to balance...)
    warnings: list[Problem] = field(default_factory=list, compare=False)

    @property
    def nf_hook(self) -> str:
        """The hook NFs are built for: "xdp" or "tc"."""
        return nf_hook(self.hook)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PipelineSpec:
        return parse_pipeline(load_file(os.fspath(path)))

    @classmethod
    def from_text(cls, text: str, file: str = "<pipeline>") -> PipelineSpec:
        return parse_pipeline(load(text, file))


class PipelineErrors(ProblemsError):
    """Problems in one pipeline file; ``problems`` lists each with its position."""


def parse_pipeline(doc: Doc) -> PipelineSpec:
    parser = _Parser(doc)
    spec = parser.parse()
    if parser.problems:
        raise PipelineErrors(parser.problems)
    return spec


def parse_pipeline_collect(doc: Doc) -> tuple[PipelineSpec | None, list[Problem]]:
    """Parse, returning whatever could be parsed plus every problem found."""
    parser = _Parser(doc)
    spec = parser.parse()
    return spec, parser.problems


class _Parser(Checker):
    def __init__(self, doc: Doc):
        super().__init__(doc)
        self.warnings: list[Problem] = []
    # --- top level --------------------------------------------------------------------

    def parse(self) -> PipelineSpec | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.problem((), f"a pipeline file is a mapping with keys {', '.join(TOP_KEYS)}; "
                             f"found {describe(data)}")
            return None
        for key in data:
            if key not in TOP_KEYS:
                self.problem((key,), f"unknown key '{key}' (expected one of: "
                                     f"{', '.join(TOP_KEYS)})", key=True)
        name = self._name(data)
        hook = self._choice(data, "hook", HOOKS, required=True)
        mode = self._choice(data, "mode", MODES.get(hook, ("auto",)), default="auto")
        linking = self._choice(data, "linking", LINKINGS, default="auto")
        interfaces = self._interfaces(data)
        description = data.get("description", "")
        if not isinstance(description, str):
            self.problem(("description",), "expected a string")
            description = ""
        nodes = self._nodes(data, hook)
        edges = self._edges(data)
        entry = data.get("entry")
        if entry is None:
            entry = next(iter(nodes), "")
        elif not isinstance(entry, str):
            self.problem(("entry",), f"expected a node id, found {describe(entry)}")
            entry = ""
        elif entry not in nodes and nodes:
            self.problem(("entry",), f"entry node '{entry}' is not defined (nodes: "
                                     f"{', '.join(nodes)})")
        return PipelineSpec(name=name, hook=hook or "xdp", interfaces=interfaces,
                            mode=mode or "auto", linking=linking or "auto", entry=entry,
                            nodes=nodes, edges=edges, file=self.doc.file,
                            description=description, doc=self.doc,
                            warnings=list(self.warnings))

    def _name(self, data) -> str:
        name = data.get("pipeline")
        if name is None:
            self.problem((), "missing 'pipeline' (the pipeline's name)")
            return ""
        if isinstance(name, bool):
            self.problem(("pipeline",), f"YAML reads this name as the boolean "
                                        f"{str(name).lower()} (yes/no/on/off are booleans): "
                                        f"quote it")
            return str(name)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            self.problem(("pipeline",), f"bad pipeline name {name!r}: use letters, digits, "
                                        f"'-', '_' or '.', at most 63 characters")
            return str(name)
        return name

    def _choice(self, data, key, choices, *, required=False, default=None):
        if key not in data:
            if required:
                self.problem((), f"missing '{key}' (one of: {', '.join(choices)})")
            return default
        value = data[key]
        if value not in choices:
            self.problem((key,), f"bad {key} {value!r}: expected one of {', '.join(choices)}")
            return default
        return value

    def _interfaces(self, data) -> list[str]:
        value = data.get("interfaces", [])
        if isinstance(value, str):
            value = [value]
        if not self.expect(("interfaces",), value, list, "a list of interface names"):
            return []
        out = []
        for i, name in enumerate(value):
            if not isinstance(name, str) or not name or len(name) > 15 or "/" in name \
                    or any(c.isspace() for c in name):
                self.problem(("interfaces", i), f"bad interface name {name!r}")
            elif name in out:
                self.problem(("interfaces", i), f"interface '{name}' is listed twice")
            else:
                out.append(name)
        return out

    # --- nodes ---------------------------------------------------------------------------

    def _nodes(self, data, hook) -> dict[str, NodeSpec]:
        nodes: dict[str, NodeSpec] = {}
        raw = data.get("nodes")
        if raw is None:
            self.problem((), "missing 'nodes' (the list of network functions)")
            return nodes
        if not self.expect(("nodes",), raw, list, "a list of nodes"):
            return nodes
        if not raw:
            self.problem(("nodes",), "a pipeline needs at least one node")
        if len(raw) > MAX_NODES:
            self.problem(("nodes",), f"{len(raw)} nodes; a pipeline has at most {MAX_NODES} "
                                     f"(the slots of its program array)")
            return nodes
        for i, item in enumerate(raw):
            node = self._node(("nodes", i), item, hook)
            if node is None:
                continue
            if node.id in nodes:
                first = nodes[node.id].pos
                self.problem(("nodes", i, "id"), f"duplicate node id '{node.id}' (first "
                                                 f"defined at line {first.line})", node=node.id)
                continue
            nodes[node.id] = node
        return nodes

    def _node(self, path, item, hook) -> NodeSpec | None:
        if not self.expect(path, item, dict, "a node (a mapping with id, nf, config)"):
            return None
        for key in item:
            if key not in NODE_KEYS:
                self.problem(path + (key,), f"unknown node key '{key}' (expected one of: "
                                            f"{', '.join(NODE_KEYS)})", key=True)
        nid = item.get("id")
        if nid is None:
            self.problem(path, "node without 'id'")
            return None
        if not isinstance(nid, str):
            self.problem(path + ("id",), f"node id must be a string, found {describe(nid)}")
            return None
        try:
            check_instance_name(nid)
        except SpecError as exc:
            self.problem(path + ("id",), exc.reason, node=nid)
            return None
        nf = item.get("nf")
        if not isinstance(nf, str) or not nf:
            self.problem(path + ("nf",) if "nf" in item else path,
                         f"node '{nid}' needs 'nf': a catalog network function or the path "
                         f"of a C file", node=nid)
            return None
        config = item.get("config", {})
        if config is None:
            config = {}
        if not self.expect(path + ("config",), config, dict, "a mapping of config keys"):
            config = {}
        impl, kind, source, ports = self._impl(path, nid, nf, config, item)
        pos = self.doc.at(path)
        node = NodeSpec(id=nid, nf=nf, kind=kind, source=source, config=config, ports=ports,
                        pos=pos, impl=impl, path=path)
        if impl is not None and hook is not None and nf_hook(hook) not in impl.hooks:
            self.problem(path + ("nf",), f"network function '{nf}' does not support the "
                                         f"{hook} hook (it supports: "
                                         f"{', '.join(impl.hooks)})", node=nid)
        return node

    def _impl(self, path, nid, nf, config, item):
        is_file = nf.endswith(".c") or "/" in nf
        if is_file:
            base = Path(self.doc.file).parent if self.doc.file and not \
                self.doc.file.startswith("<") else Path.cwd()
            source = (base / nf).resolve()
            ports = self._ports(path, item)
            if not source.is_file():
                self.problem(path + ("nf",), f"C source '{nf}' not found (looked at {source})",
                             node=nid)
                return None, "c", source, ports
            return SourceNF(source, config, ports), "c", source, ports
        if "ports" in item:
            self.problem(path + ("ports",), f"'ports' is only for C network functions: "
                                            f"'{nf}' has fixed ports", key=True, node=nid)
        try:
            cls = catalog_nf(nf)
        except SpecError as exc:
            self.problem(path + ("nf",), exc.reason, node=nid)
            return None, nf, None, ("out",)
        except ImportError:
            self.problem(path + ("nf",), f"network function '{nf}' is not available in this "
                                         f"installation", node=nid)
            return None, nf, None, ("out",)
        try:
            impl = cls(config)
        except ConfigErrors as exc:
            for sub, err in exc.errors:
                self.problem(path + ("config",) + sub, f"node '{nid}' ({nf}): {err.reason}",
                             node=nid)
            return None, nf, None, tuple(cls.ports)
        except SpecError as exc:
            sub = tuple(getattr(exc, "path", ()) or ())
            self.problem(path + ("config",) + sub, f"node '{nid}' ({nf}): {exc.reason}",
                         node=nid)
            return None, nf, None, tuple(cls.ports)
        for sub, why in impl.warnings:
            self.warnings.append(Problem(self.doc.at(path + ("config",) + sub),
                                         f"node '{nid}' ({nf}): {why}", nid))
        return impl, nf, impl.source, tuple(impl.ports)

    def _ports(self, path, item) -> tuple[str, ...]:
        ports = item.get("ports", ["out"])
        if not self.expect(path + ("ports",), ports, list, "a list of port names"):
            return ("out",)
        out = []
        for i, p in enumerate(ports):
            if not isinstance(p, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", p):
                self.problem(path + ("ports", i), f"bad port name {p!r}")
            elif p in out:
                self.problem(path + ("ports", i), f"port '{p}' is listed twice")
            else:
                out.append(p)
        if len(out) > MAX_PORTS:
            self.problem(path + ("ports",), f"at most {MAX_PORTS} ports, found {len(out)}")
        return tuple(out) or ("out",)

    # --- edges --------------------------------------------------------------------------

    def _edges(self, data) -> list[EdgeSpec]:
        raw = data.get("edges", [])
        if not self.expect(("edges",), raw, list, "a list of edges"):
            return []
        edges = []
        for i, item in enumerate(raw):
            edge = self._edge(("edges", i), item)
            if edge is not None:
                edges.append(edge)
        return edges

    def _edge(self, path, item) -> EdgeSpec | None:
        if isinstance(item, str):
            m = _EDGE_RE.match(item)
            if not m:
                self.problem(path, f"bad edge {item!r}: write 'node.port -> target' (the "
                                   f"target a node id or pass/drop/tx/aborted/redirect:IFACE)")
                return None
            src, dst = m.group("src"), m.group("dst")
        elif isinstance(item, dict):
            for key in item:
                if key not in ("from", "to"):
                    self.problem(path + (key,), f"unknown edge key '{key}' (expected from, to)",
                                 key=True)
            src, dst = item.get("from"), item.get("to")
            if not isinstance(src, str) or not isinstance(dst, str):
                self.problem(path, "an edge needs 'from' (node or node.port) and 'to' (node or "
                                   "verdict), both strings")
                return None
        else:
            self.problem(path, f"expected an edge ('a.out -> b' or {{from: a.out, to: b}}), "
                               f"found {describe(item)}")
            return None
        node, _, port = src.partition(".")
        port = port or "out"
        pos = self.doc.at(path)
        verdict = iface = None
        if dst in VERDICTS:
            verdict = dst
            if dst == "redirect":
                self.problem(path, "redirect needs an interface: 'redirect:IFACE'")
                return None
        elif dst.startswith("redirect:"):
            verdict, iface = "redirect", dst.split(":", 1)[1]
            if not iface or len(iface) > 15:
                self.problem(path, f"bad redirect interface {iface!r}")
                return None
        return EdgeSpec(src=node, port=port, target=dst, pos=pos, verdict=verdict,
                        redirect_iface=iface)

