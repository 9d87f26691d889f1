"""Where an agent reads its desired state from, and reports to: the interface, and the
directory source (a directory of desired-pipeline documents — what a Kubernetes
ConfigMap mounted as a volume gives).

A ``Source`` has three calls:

* ``snapshot()`` -> ``Snapshot``: every desired-pipeline document, parsed (a document
  that does not parse is in ``Snapshot.problems``, its pipeline left as it runs);
  raises ``StoreError`` when the source cannot be read (the agent keeps what runs);
* ``wait(timeout)``: returns when the desired state may have changed, or after
  *timeout* seconds, whichever is first;
* ``report(host, status)``: publish this host's status (a JSON-able dict); a source
  that cannot be reached raises ``StoreError`` and the agent reports again later.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nfpipe.agent.desired import DesiredPipeline, parse_document
from nfpipe.errors import AgentError

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
