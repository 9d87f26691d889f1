"""What every network function of the catalog (and every user C NF) provides.

A ``NetworkFunction`` pairs a C source written to ``bpf/include/nfpipe/nf.h``
with its Python control plane:

* ``__init__(config)`` validates the node's config (a dict from the pipeline
  YAML) and raises ``SpecError`` naming the bad key;
* ``constants()`` gives the load-time constants (``NFP_CONST``), by their
  unprefixed names;
* ``populate(maps)`` writes the runtime maps (rules, backends, ...) through a
  ``NodeMaps`` view that adds the node's instance prefix;
* ``ports`` names the output ports (index = port number);
* ``runtime_keys`` names the config keys ``update(maps, config)`` changes on a
  running node without reloading its program (filter rules, LB backends, NAT
  forwards); ``runtime_state()`` / ``restore(state, maps)`` carry whatever
  control-plane state that needs from one process to the next (kept in a
  deployed pipeline's manifest).

Running one NF alone in the kernel (how its tests and benchmarks do it) is
``nfpipe.testing.load_nf``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, ClassVar

from nfpipe import resources
from nfpipe.errors import RuntimeChangeError, SpecError
from nfpipe.nfabi import NF_HOOKS, prefixed

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class NetworkFunction:
    """Base class: subclasses set ``kind``, ``source`` and ``ports``."""

    kind: ClassVar[str] = ""
    source_name: ClassVar[str] = ""         # file under bpf/
    ports: ClassVar[tuple[str, ...]] = ("out",)
    hooks: ClassVar[tuple[str, ...]] = NF_HOOKS
    config_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: Mapping[str, Any] | None = None):
        self.config = dict(config or {})
        # (path inside the config, message): what works but is probably not meant
        self.warnings: list[tuple[tuple, str]] = []
        unknown = set(self.config) - set(self.config_keys)
        if unknown:
            known = ", ".join(sorted(self.config_keys)) or "none"
            raise SpecError(f"{self.kind}: unknown config key(s) {', '.join(sorted(unknown))} "
                            f"(known: {known})")

    def reply_sources(self) -> list[tuple[tuple, str, IPAddress]]:
        """(path inside the config, label, address) for each address this NF writes back
        as the source of replies (a load balancer's VIPs); graph.crosscheck reads it."""
        return []

    def masquerades(self) -> list[tuple[IPNetwork, str]]:
        """(network, what its sources become) for each network whose sources this NF
        rewrites (a NAT's internal networks); graph.crosscheck reads it."""
        return []

    @property
    def source(self) -> Path:
        return resources.nf_source(self.source_name)

    @property
    def default_instance(self) -> str:
        """The instance name when an NF is built alone: its source file's stem."""
        return self.source.stem

    def constants(self) -> dict[str, Any]:
        return {}

    def build_defines(self) -> dict[str, str]:
        """Preprocessor defines (name -> C text) the node's program is built with: config
        compiled into the code (a filter's ``classifier: compiled`` rules).  Part of the
        generated wrapper, so of the compile cache key and the node's code key."""
        return {}

    def used_ports(self) -> tuple[str, ...]:
        """The ports this configured NF can send packets to: each must be wired.

        A port no packet can reach (e.g. a filter port no rule names) may stay
        unwired; should it ever be taken, the packet is aborted and counted."""
        return tuple(self.ports)

    def map_sizes(self) -> dict[str, int]:
        """max_entries of maps the config sizes (unprefixed names), applied before load."""
        return {}

    def check_fits(self, maps: NodeMaps) -> None:
        """Refuse (SpecError) a config that the node's loaded *maps* cannot hold, before
        anything is written: a runtime change checks it first."""

    # --- hardware offload (compose.offload) --------------------------------------------

    def offload_defines(self, max_entries: int | None) -> dict[str, str]:  # noqa: ARG002
        """Preprocessor names the NF's offload flavour is compiled with (one program for
        the whole pipeline: the same for every node of a kind), for a device whose
        maps hold at most *max_entries* entries (None: no known limit)."""
        return {}

    def offload_problems(self, max_entries: int | None) -> list[str]:  # noqa: ARG002
        """What in this config keeps the node off such a device (it then runs on the
        host, or the offload is refused)."""
        return []

    def populate(self, maps: NodeMaps) -> None:
        """Write the runtime maps from the config (rules, backends, ...)."""

    # -- live updates --

    runtime_keys: ClassVar[frozenset[str]] = frozenset()
    # Config keys whose values populate() writes into maps (None: all of them).  A
    # reloaded node keeps its maps (and its state) when none of these changed.
    map_keys: ClassVar[frozenset[str] | None] = None

    @classmethod
    def live_keys(cls, config: Mapping[str, Any]) -> frozenset[str]:  # noqa: ARG003
        """The runtime keys a node configured with *config* changes in its maps: all of
        ``runtime_keys`` unless the config builds some of them into the program."""
        return cls.runtime_keys

    @classmethod
    def built_in(cls, old: Mapping[str, Any], new: Mapping[str, Any],
                 changed: Iterable[str]) -> set[str]:
        """Of the keys *changed* from config *old* to *new*, those the node's maps cannot
        take: not live keys of both (one of the two builds them into its program)."""
        return set(changed) - (cls.live_keys(old) & cls.live_keys(new))

    def changed_keys(self, config: Mapping[str, Any]) -> set[str]:
        """Config keys whose values differ between this config and *config*."""
        return {k for k in set(self.config) | set(config) if self.config.get(k) != config.get(k)}

    def maps_depend_on(self, keys: set[str]) -> bool:
        """Whether the maps populate() writes depend on any of *keys*."""
        return bool(keys) if self.map_keys is None else bool(keys & self.map_keys)

    def prepare(self) -> None:
        """Work out, without the kernel, everything populate() or update() computes from
        the config that can refuse it (a SpecError): a deploy or a runtime change calls
        it before it writes any record or map, so a refused config changes nothing."""

    def update(self, maps: NodeMaps, config: Mapping[str, Any]) -> None:  # noqa: ARG002
        """Apply *config* (differing from this one in ``runtime_keys`` only) to the live
        maps of a running node; each packet sees the old config or the new."""
        raise SpecError(f"{self.kind}: no part of its config changes at runtime; the node's "
                        f"program must be reloaded")

    @classmethod
    def change_live(cls, maps: NodeMaps, old_config: Mapping[str, Any], old_state: Any,
                    config: Mapping[str, Any], new: NetworkFunction | None = None) -> Any:
        """Change a running node deployed from *old_config* (its control-plane state
        *old_state*) to *config* in its maps; returns the state after.  *new* is
        ``cls(config)``, prepared, when the caller has it (``runtime_change``'s): an
        NF whose change needs nothing of the old config can write it without parsing
        that again.  Running it twice (a repair after a crash) ends the same."""
        del new                                 # this one changes from the old config
        impl = cls(old_config)
        impl.restore(old_state, maps)
        impl.update(maps, config)
        return impl.runtime_state()

    def runtime_state(self) -> Any:
        """JSON-able control-plane state a later ``update`` needs (None: the config
        alone says everything)."""
        return None

    def restore(self, state: Any, maps: NodeMaps) -> None:
        """Take over the control plane of a running node deployed from this config:
        *state* is what ``runtime_state()`` returned after its last change."""


class NodeMaps(Mapping):
    """The maps of one node instance, by their names in the NF's C source."""

    def __init__(self, maps: Mapping[str, Any], instance: str):
        self._maps = maps
        self.instance = instance

    def __getitem__(self, name: str):
        try:
            return self._maps[prefixed(self.instance, name)]
        except KeyError:
            raise KeyError(f"node '{self.instance}' has no map '{name}'") from None

    def __iter__(self):
        prefix = f"{self.instance}__"
        return (k[len(prefix):] for k in self._maps if k.startswith(prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class SourceNF(NetworkFunction):
    """A user's own C NF: any file written to nf.h; config sets its constants."""

    kind = "c"
    map_keys = frozenset()              # config sets constants only

    def __init__(self, path: str | Path, config: Mapping[str, Any] | None = None,
                 ports: tuple[str, ...] = ("out",)):
        self._path = Path(path)
        self.ports = tuple(ports)
        self.config = dict(config or {})
        self.warnings = []

    @property
    def source(self) -> Path:
        return self._path

    def constants(self) -> dict[str, Any]:
        return dict(self.config)


_REDEPLOY = "edit the pipeline file and 'nfpipe deploy' it"


def runtime_change(cls: type[NetworkFunction], nf: str, node: str, config: Mapping[str, Any],
                   change: Mapping[str, Any], wired: Iterable[str]) -> NetworkFunction:
    """The control plane node *node* (an *nf* of class *cls*, now configured with *config*,
    its output ports *wired*) has once *change* replaces the runtime keys it names, the
    others kept: what ``nfpipe rules`` / ``nfpipe backends`` / a test case's ``config`` do.

    Validated and prepared (``SpecError`` for a bad config or a rule set too complex), so
    that a refused change writes nothing; ``RuntimeChangeError`` when the NF takes no
    change at runtime, a key is not a runtime key, or the new config sends packets to a
    port that is not wired."""
    if cls is SourceNF or not cls.runtime_keys:
        raise RuntimeChangeError(f"node '{node}' ({nf}) has no config that changes at runtime",
                                 node=node, hint=_REDEPLOY)
    unknown = set(change) - set(cls.runtime_keys)
    if unknown:
        raise RuntimeChangeError(f"{nf} node '{node}': {', '.join(sorted(unknown))} cannot "
                                 f"change at runtime (runtime keys: "
                                 f"{', '.join(sorted(cls.runtime_keys))})",
                                 node=node, hint=_REDEPLOY)
    # Not copied: an NF reads its config and never changes what is nested in it (a deep
    # copy of a 10k-rule list was a fifth of a live update).
    merged = {**config, **change}
    fixed = cls.built_in(config, merged, (k for k in change if config.get(k) != change[k]))
    if fixed:
        raise RuntimeChangeError(f"{nf} node '{node}': {', '.join(sorted(fixed))} cannot "
                                 f"change at runtime: its config builds them into its "
                                 f"program", node=node, hint=_REDEPLOY)
    new = cls(merged)
    new.prepare()
    wired = sorted(set(wired))
    unwired = [p for p in new.used_ports() if p not in wired]
    if unwired:
        raise RuntimeChangeError(f"the new config sends packets to port(s) {', '.join(unwired)} "
                                 f"of '{node}', which the pipeline does not wire (wired: "
                                 f"{', '.join(wired)})", node=node,
                                 hint="redeploy with those edges")
    return new
