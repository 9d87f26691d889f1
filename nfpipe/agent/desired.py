"""The desired state of a host: which pipelines it should run, where, at which revision;
and where it comes from (the ``Source`` interface, the directory source).

A *desired-pipeline document* (YAML or JSON; a file of a directory source, or the value
of a key in etcd) is a pipeline file plus its targeting::

    name: edge-fw                 # optional: the pipeline's own name by default
    revision: 7                   # an integer the author raises with every change
    hosts:
      selector: {role: edge}      # every label must match the host's (empty: all hosts)
      interfaces:                 # per host name; "*" for every other targeted host
        "*": [eth0]
        host-b: ["ns1:eth1"]      # [NETNS:]IFACE, as nfpipe deploy --iface takes
      mode: auto                  # optional: nfpipe deploy --mode
    pipeline:                     # the pipeline file itself (docs/pipeline-format.md)
      pipeline: edge-fw
      hook: xdp
      nodes: [...]
      edges: [...]

A host is targeted when every selector label matches and the document gives it
interfaces (its own name or ``"*"``).  ``digest`` fingerprints everything the host's
deploy depends on, so the reconciler can tell an unchanged pipeline without deploying.
See docs/agent.md.

A ``Source`` is where an agent reads its desired state from and reports to: the
directory source here (a directory of documents — what a Kubernetes ConfigMap
mounted as a volume gives), etcd in ``nfpipe.agent.etcd``.  It has four calls:

* ``snapshot()`` -> ``Snapshot``: every desired-pipeline document, parsed (a document
  that does not parse is in ``Snapshot.problems``, its pipeline left as it runs);
  raises ``StoreError`` when the source cannot be read (the agent keeps what runs);
* ``wait(timeout)``: returns when the desired state may have changed, or after
  *timeout* seconds, whichever is first;
* ``report(host, status)``: publish this host's status (a JSON-able dict); a source
  that cannot be reached raises ``StoreError`` and the agent reports again later;
* ``close()``: end a ``wait`` in progress.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from nfpipe.attach import Target
from nfpipe.errors import AgentError

DOC_KEYS = frozenset({"name", "revision", "hosts", "pipeline"})
HOSTS_KEYS = frozenset({"selector", "interfaces", "mode"})
ALL_HOSTS = "*"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def parse_labels(items: list[str] | None) -> dict[str, str]:
    """``["role=edge", "zone=a"]`` (the CLI's ``--label``) -> ``{"role": "edge", ...}``."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AgentError(f"a host label is KEY=VALUE, got {item!r}")
        out[key] = value
    return out


@dataclass(frozen=True)
class DesiredPipeline:
    """One desired-pipeline document, checked."""

    name: str
    revision: int
    selector: dict[str, str]
    interfaces: dict[str, tuple[str, ...]]       # host name or "*" -> [NETNS:]IFACE
    pipeline: dict[str, Any]                     # the pipeline file as data
    mode: str | None = None
    source: str = ""                             # where it came from: a path, a key
    problems: tuple[str, ...] = field(default=(), compare=False)

    def targets(self, host: str, labels: Mapping[str, str]) -> list[Target] | None:
        """The interfaces *host* (with *labels*) should run this pipeline on, or None
        when the document does not target it."""
        if any(labels.get(k) != v for k, v in self.selector.items()):
            return None
        ifaces = self.interfaces.get(host, self.interfaces.get(ALL_HOSTS))
        if not ifaces:
            return None
        return [Target.parse(t) for t in ifaces]

    def pipeline_text(self) -> str:
        """The pipeline file the deploy reads (YAML, keys in the document's order)."""
        return yaml.safe_dump(self.pipeline, sort_keys=False)

    def digest(self, host: str, labels: Mapping[str, str]) -> str:
        """What *host*'s deploy of this document depends on, fingerprinted."""
        targets = self.targets(host, labels) or []
        data = {"pipeline": self.pipeline, "targets": [str(t) for t in targets],
                "mode": self.mode}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def parse_document(text: str, source: str) -> DesiredPipeline:
    """A desired-pipeline document's text -> ``DesiredPipeline``; an ``AgentError``
    naming *source* and the key when it is not one."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AgentError(f"not YAML or JSON: {exc}", source=source) from None
    if not isinstance(data, Mapping):
        raise AgentError(f"expected a mapping with keys {', '.join(sorted(DOC_KEYS))}, "
                         f"got {type(data).__name__}", source=source)
    unknown = set(data) - DOC_KEYS
    if unknown:
        raise AgentError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                         f"(known: {', '.join(sorted(DOC_KEYS))})", source=source)
    pipeline = data.get("pipeline")
    if not isinstance(pipeline, Mapping) or "pipeline" not in pipeline:
        raise AgentError("pipeline: expected the pipeline file as a mapping (with its "
                         "'pipeline: NAME', 'hook', 'nodes', 'edges')", source=source)
    name = data.get("name", pipeline["pipeline"])
    if name != pipeline["pipeline"]:
        raise AgentError(f"name: {name!r} differs from the pipeline's own name "
                         f"{pipeline['pipeline']!r}", source=source)
    if not isinstance(name, str) or not _NAME.match(name):
        raise AgentError(f"name: {name!r} cannot name a pipeline here (letters, digits, "
                         f"'_', '-', up to 64)", source=source)
    revision = data.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise AgentError(f"revision: expected a non-negative integer, got {revision!r}",
                         source=source)
    hosts = data.get("hosts")
    if not isinstance(hosts, Mapping):
        raise AgentError("hosts: expected a mapping with 'interfaces' (and optionally "
                         "'selector', 'mode')", source=source)
    unknown = set(hosts) - HOSTS_KEYS
    if unknown:
        raise AgentError(f"hosts: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                         f"(known: {', '.join(sorted(HOSTS_KEYS))})", source=source)
    selector = hosts.get("selector") or {}
    if not isinstance(selector, Mapping) or \
            not all(isinstance(v, (str, int)) for v in selector.values()):
        raise AgentError(f"hosts.selector: expected label: value pairs, got {selector!r}",
                         source=source)
    raw_ifaces = hosts.get("interfaces")
    if not isinstance(raw_ifaces, Mapping) or not raw_ifaces:
        raise AgentError("hosts.interfaces: expected host name (or \"*\") -> list of "
                         "[NETNS:]IFACE", source=source)
    interfaces: dict[str, tuple[str, ...]] = {}
    for host, lst in raw_ifaces.items():
        if isinstance(lst, str):
            lst = [lst]
        if not isinstance(lst, list) or not all(isinstance(x, str) and x for x in lst):
            raise AgentError(f"hosts.interfaces.{host}: expected a list of [NETNS:]IFACE, "
                             f"got {lst!r}", source=source)
        for t in lst:
            try:
                Target.parse(t)
            except Exception as exc:
                raise AgentError(f"hosts.interfaces.{host}: {exc}", source=source) from None
        interfaces[str(host)] = tuple(lst)
    mode = hosts.get("mode")
    if mode is not None and not isinstance(mode, str):
        raise AgentError(f"hosts.mode: expected a mode name, got {mode!r}", source=source)
    return DesiredPipeline(str(name), revision, {str(k): str(v) for k, v in selector.items()},
                           interfaces, dict(pipeline), mode, source)


def document_text(d: DesiredPipeline) -> str:
    """The document of *d* (what ``parse_document`` reads back to an equal value)."""
    hosts: dict[str, Any] = {"selector": dict(d.selector),
                             "interfaces": {h: list(v) for h, v in d.interfaces.items()}}
    if d.mode:
        hosts["mode"] = d.mode
    return yaml.safe_dump({"name": d.name, "revision": d.revision, "hosts": hosts,
                           "pipeline": d.pipeline}, sort_keys=False)


# ---- sources ---------------------------------------------------------------------------

DOC_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Snapshot:
    """The desired state at one moment: documents by pipeline name, and the problems of
    the documents that did not parse (source -> message)."""

    pipelines: dict[str, DesiredPipeline] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    revision: int = 0                # the store's revision, where it has one


class Source(Protocol):
    def snapshot(self) -> Snapshot: ...

    def wait(self, timeout: float) -> None: ...

    def report(self, host: str, status: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def build_snapshot(items: list[tuple[str, str]], revision: int = 0) -> Snapshot:
    """(text, source) of each document -> the ``Snapshot``.  A pipeline named by two
    documents is a problem of both and neither is applied (which one is meant cannot
    be told): its running revision is left as it is."""
    snap = Snapshot(revision=revision)
    by_name: dict[str, list[DesiredPipeline]] = {}
    for text, source in items:
        try:
            d = parse_document(text, source)
        except AgentError as exc:
            snap.problems[source] = str(exc)
            continue
        by_name.setdefault(d.name, []).append(d)
    for name, docs in by_name.items():
        if len(docs) == 1:
            snap.pipelines[name] = docs[0]
            continue
        where = ", ".join(d.source for d in docs)
        for d in docs:
            snap.problems[d.source] = f"{d.source}: pipeline '{name}' is desired by " \
                                      f"{len(docs)} documents ({where})"
    return snap


class DirectorySource:
    """Every ``*.yaml``/``*.yml``/``*.json`` file directly in *path* is one document
    (hidden files and ConfigMap's ``..data`` entries are skipped; symlinks followed).
    Reports go to ``<report_dir>/<host>.json`` when *report_dir* is set (the agent's
    HTTP endpoint serves them as well)."""

    def __init__(self, path: str | os.PathLike, *, report_dir: str | os.PathLike | None = None,
                 poll: float = 0.5):
        self.path = Path(path)
        self.report_dir = Path(report_dir) if report_dir else None
        self.poll = poll
        self._stop = threading.Event()
        self._seen = ""

    def _files(self) -> list[Path]:
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            raise AgentError("the directory of desired pipelines does not exist",
                             source=str(self.path)) from None
        return [self.path / n for n in names
                if not n.startswith(".") and n.endswith(DOC_SUFFIXES)]

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        try:
            for f in self._files():
                try:
                    h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
                except OSError:
                    continue
        except AgentError:
            return "missing"
        return h.hexdigest()

    def snapshot(self) -> Snapshot:
        fingerprint = self._fingerprint()
        items, unreadable = [], {}
        for f in self._files():
            try:
                items.append((f.read_text(), str(f)))
            except OSError as exc:
                unreadable[str(f)] = f"{f}: cannot read: {exc}"
        snap = build_snapshot(items)
        snap.problems.update(unreadable)
        self._seen = fingerprint
        return snap

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._fingerprint() != self._seen:
                return
            self._stop.wait(min(self.poll, left))

    def report(self, host: str, status: dict[str, Any]) -> None:
        if self.report_dir is None:
            return
        self.report_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.report_dir / f".{host}.json.tmp"
        tmp.write_text(json.dumps(status, indent=1, sort_keys=True))
        os.replace(tmp, self.report_dir / f"{host}.json")

    def close(self) -> None:
        self._stop.set()
