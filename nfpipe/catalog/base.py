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

``load_nf`` builds one NF alone for a hook and loads it, which is how the NF
tests run it in the kernel (``LoadedNF.run(packet)``).
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nfpipe.errors import SpecError


class Verdict(enum.IntEnum):
    """Final verdicts of nf.h's ``enum nfp_verdict``; ports are the numbers >= 0."""

    PASS = -1
    DROP = -2
    TX = -3
    REDIRECT = -4
    ABORTED = -5


XDP_CODES = {Verdict.PASS: 2, Verdict.DROP: 1, Verdict.TX: 3, Verdict.REDIRECT: 4,
             Verdict.ABORTED: 0}
TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
TC_CODES = {Verdict.PASS: TC_ACT_OK, Verdict.DROP: TC_ACT_SHOT, Verdict.TX: TC_ACT_REDIRECT,
            Verdict.REDIRECT: TC_ACT_REDIRECT, Verdict.ABORTED: TC_ACT_SHOT}
MAX_PORTS = 8


def bpf_source_dir() -> Path:
    from nfpipe.build.toolchain import bpf_dir
    return bpf_dir()


class NetworkFunction:
    """Base class: subclasses set ``kind``, ``source`` and ``ports``."""

    kind: ClassVar[str] = ""
    source_name: ClassVar[str] = ""         # file under bpf/
    ports: ClassVar[tuple[str, ...]] = ("out",)
    hooks: ClassVar[tuple[str, ...]] = ("xdp", "tc")
    config_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: Mapping[str, Any] | None = None):
        self.config = dict(config or {})
        unknown = set(self.config) - set(self.config_keys)
        if unknown:
            known = ", ".join(sorted(self.config_keys)) or "none"
            raise SpecError(f"{self.kind}: unknown config key(s) {', '.join(sorted(unknown))} "
                            f"(known: {known})")

    @property
    def source(self) -> Path:
        return bpf_source_dir() / self.source_name

    @property
    def default_instance(self) -> str:
        """The instance name when an NF is built alone: its source file's stem."""
        return self.source.stem

    def port_number(self, name: str | int) -> int:
        if isinstance(name, int):
            if 0 <= name < len(self.ports):
                return name
        elif name in self.ports:
            return self.ports.index(name)
        raise SpecError(f"{self.kind} has no port {name!r} (ports: {', '.join(self.ports)})")

    def constants(self) -> dict[str, Any]:
        return {}

    def used_ports(self) -> tuple[str, ...]:
        """The ports this configured NF can send packets to: each must be wired.

        A port no packet can reach (e.g. a filter port no rule names) may stay
        unwired; should it ever be taken, the packet is aborted and counted."""
        return tuple(self.ports)

    def map_sizes(self) -> dict[str, int]:
        """max_entries of maps the config sizes (unprefixed names), applied before load."""
        return {}

    def populate(self, maps: NodeMaps) -> None:
        """Write the runtime maps from the config (rules, backends, ...)."""

    # -- live updates --

    runtime_keys: ClassVar[frozenset[str]] = frozenset()
    # Config keys whose values populate() writes into maps (None: all of them).  A
    # reloaded node keeps its maps (and its state) when none of these changed.
    map_keys: ClassVar[frozenset[str] | None] = None

    def changed_keys(self, config: Mapping[str, Any]) -> set[str]:
        """Config keys whose values differ between this config and *config*."""
        return {k for k in set(self.config) | set(config) if self.config.get(k) != config.get(k)}

    def maps_depend_on(self, keys: set[str]) -> bool:
        """Whether the maps populate() writes depend on any of *keys*."""
        return bool(keys) if self.map_keys is None else bool(keys & self.map_keys)

    def runtime_change(self, config: Mapping[str, Any]) -> bool:
        """Whether going from this config to *config* changes only runtime keys."""
        return self.changed_keys(config) <= self.runtime_keys

    def update(self, maps: NodeMaps, config: Mapping[str, Any]) -> None:
        """Apply *config* (differing from this one in ``runtime_keys`` only) to the live
        maps of a running node; each packet sees the old config or the new."""
        raise SpecError(f"{self.kind}: no part of its config changes at runtime; the node's "
                        f"program must be reloaded")

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
            return self._maps[f"{self.instance}__{name}"]
        except KeyError:
            raise KeyError(f"node '{self.instance}' has no map '{name}'") from None

    def __iter__(self):
        prefix = f"{self.instance}__"
        return (k[len(prefix):] for k in self._maps if k.startswith(prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class NFRun:
    """One packet through one NF: its raw result, the hook's code, the packet after."""

    result: int          # a port (>= 0) or a Verdict (< 0)
    retval: int          # what the hook saw (XDP_* / TC_ACT_*)
    data: bytes
    duration_ns: int

    @property
    def verdict(self) -> Verdict | None:
        return Verdict(self.result) if self.result < 0 else None

    @property
    def port(self) -> int | None:
        return self.result if self.result >= 0 else None


class LoadedNF:
    """One NF built alone (standalone mode) for one hook and loaded into the kernel."""

    def __init__(self, nf: NetworkFunction, hook: str, instance: str | None = None):
        from nfpipe.build.nf import build_nf
        from nfpipe.load.object import Object
        from nfpipe.load.spec import ObjectSpec
        self.nf = nf
        self.hook = hook
        self.instance = instance or nf.default_instance
        path = build_nf(nf.source, hook=hook, instance=self.instance, mode="standalone")
        spec = apply_map_sizes(ObjectSpec.from_file(path), self.instance, nf)
        constants = {f"{self.instance}__{k}": v for k, v in nf.constants().items()}
        self.obj = Object.load(spec, constants=constants)
        try:
            self.maps = NodeMaps(self.obj.maps, self.instance)
            nf.populate(self.maps)
            self.program = self.obj.programs[self.instance]
        except BaseException:
            self.obj.close()
            raise

    def run(self, packet: Any, repeat: int = 1) -> NFRun:
        res = self.program.test_run(bytes(packet), repeat=repeat)
        result = self.obj.maps[".bss"][0]["nfp_last_result"]
        return NFRun(result, res.retval, res.data, res.duration_ns)

    def expected_retval(self, result: int) -> int:
        """The hook code a standalone build returns for an NF result (ports pass)."""
        v = Verdict.PASS if result >= 0 else Verdict(result)
        return (XDP_CODES if self.hook == "xdp" else TC_CODES)[v]

    def close(self) -> None:
        self.obj.close()

    def __enter__(self) -> LoadedNF:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def apply_map_sizes(spec, instance: str, nf: NetworkFunction):
    """A copy of *spec* with the node's maps sized as ``nf.map_sizes()`` asks."""
    sizes = nf.map_sizes()
    if not sizes:
        return spec
    spec = spec.copy()
    for name, size in sizes.items():
        try:
            spec.maps[f"{instance}__{name}"].max_entries = int(size)
        except KeyError:
            raise SpecError(f"{nf.kind} node '{instance}' sizes map '{name}', which its "
                            f"object does not have") from None
    return spec


def load_nf(nf: NetworkFunction, hook: str, instance: str | None = None) -> LoadedNF:
    return LoadedNF(nf, hook, instance)


class SourceNF(NetworkFunction):
    """A user's own C NF: any file written to nf.h; config sets its constants."""

    kind = "c"
    map_keys = frozenset()              # config sets constants only

    def __init__(self, path: str | Path, config: Mapping[str, Any] | None = None,
                 ports: tuple[str, ...] = ("out",)):
        self._path = Path(path)
        self.ports = tuple(ports)
        self.config = dict(config or {})

    @property
    def source(self) -> Path:
        return self._path

    def constants(self) -> dict[str, Any]:
        return dict(self.config)
