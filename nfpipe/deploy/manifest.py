"""The records a deploy keeps on bpffs: what runs (``Manifest``), an update on its way
(the same record as ``manifest_next``, with ``pending`` runtime changes), and what a
first deploy is about to attach (``Intent``).

Each record is a dataclass that turns into JSON and back (``to_json`` /
``from_json``).  A manifest carries its format ``version``; reading one of another
version is a ``DeployError`` that says what to do, never a guess.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from nfpipe.errors import DeployError, NoSuchObject

MANIFEST_VERSION = 2
HISTORY_KEPT = 20           # revisions a manifest's history remembers


def _fields(record) -> dict[str, Any]:
    """A record's fields as a dict, nested records as dicts.  Unlike ``asdict`` it does
    not copy the values: the result is for ``json.dumps`` (a 10k-rule filter's config
    is copied twice per revision otherwise, a good part of a runtime update's time)."""
    out = {}
    for f in fields(record):
        v = getattr(record, f.name)
        if isinstance(v, list) and v and is_dataclass(v[0]):
            v = [_fields(x) for x in v]
        out[f.name] = v
    return out


def _known(cls, data: dict) -> dict:
    """The keys of *data* that are fields of dataclass *cls*."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass
class NodeRecord:
    """One node as deployed: its plan, code key, live config and control-plane state,
    and its pinned program."""

    id: str
    index: int                       # slot in nfp_jmp, row in nfp_stats
    ports: list[str]
    nf: str                          # a catalog kind or the path of a C file
    code: str                        # digest of what its program depends on
    config: dict[str, Any]
    state: Any = None                # NetworkFunction.runtime_state()
    program: str | None = None       # pin path
    prog_id: int | None = None

    @classmethod
    def from_json(cls, data: dict) -> NodeRecord:
        return cls(**_known(cls, data))


@dataclass
class InterfaceRecord:
    """One interface the pipeline is attached to (or, in ``manifest_next``, is about to
    be attached to: ``kind`` None)."""

    iface: str
    netns: str | None
    mode: str                        # native / generic / offload / tcx / clsact
    key: str                         # its name under links/
    kind: str | None = None          # Link, NetlinkXdp or ClsactFilter
    prog_id: int | None = None
    placement: list[str] = field(default_factory=list)
    link: str | None = None          # the pinned bpf_link
    attachment: dict | None = None   # nfpipe.attach.records: an attachment without a link
    force: bool = False              # an update adding it may take over the interface

    @classmethod
    def from_json(cls, data: dict) -> InterfaceRecord:
        return cls(**_known(cls, data))


@dataclass
class Pending:
    """A runtime config change an update (or ``configure``) still has to write into a
    node's maps: from ``old_config``/``old_state`` to ``config``.  Its ``config`` is
    the node record's of the same manifest, and written once (a filter's may hold
    10,000 rules): the record has no ``config`` of its own then."""

    node: str
    nf: str
    old_config: dict[str, Any]
    old_state: Any
    config: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict) -> Pending:
        return cls(**_known(cls, data))


@dataclass
class Manifest:
    """What a deployed pipeline runs: every program, map and attachment by its pin."""

    revision: int
    pipeline: str
    file: str
    source: str                      # the pipeline file's text
    hook: str
    mode: str
    linking: str
    plan: dict[str, Any]             # Plan.to_dict()
    nodes: list[NodeRecord]
    entry_prog_id: int
    program_key: str = ""
    fused_style: str | None = None
    entry_program: str | None = None  # pin path of the entry program
    jmp: str | None = None           # pin path of nfp_jmp (tail calls)
    nic_program: str | None = None   # pin path of the NIC tier's program (tiered)
    interfaces: list[InterfaceRecord] = field(default_factory=list)
    maps: dict[str, str] = field(default_factory=dict)      # map name -> pin path
    deployed_at: float = 0.0
    updated_at: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    version: int = MANIFEST_VERSION
    # set on what deploy() returns: {"how": ..., "lines": [...]}; never stored
    update: dict[str, Any] | None = field(default=None, compare=False)

    # --- (de)serialisation ----------------------------------------------------------------

    @classmethod
    def from_json(cls, data: dict, *, where: str = "the manifest") -> Manifest:
        version = data.get("version")
        if version != MANIFEST_VERSION:
            raise DeployError(f"{where} has format version {version!r}; this nfpipe reads "
                              f"version {MANIFEST_VERSION}: destroy the pipeline with the "
                              f"nfpipe that deployed it, then deploy it again")
        d = _known(cls, data)
        entry = data.get("entry") or {}
        d.pop("entry", None)
        d["entry_program"] = entry.get("program")
        d["nodes"] = [NodeRecord.from_json(n) for n in data.get("nodes", [])]
        d["interfaces"] = [InterfaceRecord.from_json(i) for i in data.get("interfaces", [])]
        configs = {n.id: n.config for n in d["nodes"]}
        d["pending"] = [Pending.from_json(p if "config" in p else
                                          {**p, "config": configs.get(p.get("node"))})
                        for p in data.get("pending", [])]
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON data (sharing its values: serialise it, do not edit it)."""
        out = _fields(self)
        out.pop("entry_program")
        out.pop("update")
        out["entry"] = {"program": self.entry_program, "prog_id": self.entry_prog_id}
        for key in ("pending", "nic_program"):      # only where there is one
            if not out[key]:
                out.pop(key)
        configs = {n.id: n.config for n in self.nodes}
        for p in out.get("pending", ()):
            mine = configs.get(p["node"])
            if p["config"] is mine or p["config"] == mine:
                del p["config"]                  # the node's: from_json takes it from there
        return out

    def report(self) -> dict[str, Any]:
        """The manifest as JSON, with the update's report when it is an update's result."""
        out = self.to_json()
        if self.update is not None:
            out["update"] = self.update
        return out

    # --- questions ------------------------------------------------------------------------

    def node(self, node_id: str) -> NodeRecord:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise NoSuchObject(f"pipeline '{self.pipeline}' has no node '{node_id}' (nodes: "
                          f"{', '.join(n.id for n in self.nodes)})")

    def wired_ports(self, node_id: str) -> list[str]:
        """The ports of *node_id* the deployed plan wires."""
        return list(next(n for n in self.plan["nodes"] if n["id"] == node_id)["ports"])

    def referenced(self) -> set[str]:
        """Every pin path this manifest uses."""
        paths = set(self.maps.values())
        paths.update(n.program for n in self.nodes if n.program)
        paths.update(i.link for i in self.interfaces if i.link)
        paths.update(p for p in (self.entry_program, self.nic_program) if p)
        return paths

    @property
    def last_change(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    # --- the next revision ----------------------------------------------------------------

    def next_revision(self, how: str, lines: list[str]) -> Manifest:
        """A copy of this manifest as the next revision, its history told what changed.

        The nodes' configs and states are shared with this revision, not copied (a
        filter's may hold 10,000 rules): they are values, which an update replaces
        (``nxt.node(n).config = ...``) and never changes in place."""
        shared = {id(v): v for n in self.nodes for v in (n.config, n.state) if v is not None}
        nxt = copy.deepcopy(self, shared)
        nxt.update = None
        nxt.revision = self.revision + 1
        nxt.updated_at = now = time.time()
        nxt.history = (self.history + [{"revision": nxt.revision, "at": now, "how": how,
                                        "lines": lines}])[-HISTORY_KEPT:]
        return nxt


@dataclass
class IntentTarget:
    iface: str
    netns: str | None
    qdisc_before: str | None         # clsact / ingress / None before the attach
    replaced: dict | None = None     # --force: the foreign XDP program replaced (its pin)


@dataclass
class Intent:
    """Pinned before a first deploy (or an update adding interfaces) attaches: which
    interfaces are about to get program *entry_prog_id*, and what qdisc each had.  An
    attachment without a link outlives a killed process; this is how the repair finds
    it and leaves the interface as it was."""

    entry_prog_id: int
    hook: str
    targets: list[IntentTarget]

    @classmethod
    def from_json(cls, data: dict) -> Intent:
        return cls(entry_prog_id=data["entry_prog_id"], hook=data["hook"],
                   targets=[IntentTarget(**_known(IntentTarget, t))
                            for t in data.get("targets", [])])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
