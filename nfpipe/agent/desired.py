"""The desired state of a host: which pipelines it should run, where, at which revision.

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
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
