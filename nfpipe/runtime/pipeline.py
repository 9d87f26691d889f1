"""``Pipeline``: a built pipeline loaded into the kernel (not attached).

Tail-call linking loads the entry node first (it creates the shared maps
``nfp_meta_map``, ``nfp_stats`` and ``nfp_jmp``), then every other node with
those maps handed in, then fills ``nfp_jmp``.  Fused linking loads one object.
Either way each node's NF writes its runtime maps (``populate``) before the
pipeline is returned, and ``test_run`` runs the entry program in the kernel:
the tail calls happen inside the kernel's test run.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import struct
import threading
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nfpipe.catalog.base import NodeMaps
from nfpipe.compose.build import FUSED, Build, build as build_plan
from nfpipe.compose.fused import FUSED_PROGRAM, fused_constants, hook_constants
from nfpipe.compose.nodes import apply_map_sizes
from nfpipe.compose.offload import OffloadBuild
from nfpipe.compose.plan import Plan, make_plan
from nfpipe.errors import SpecError, VerifierError
from nfpipe.loader.elf import short_kernel_name
from nfpipe.loader.maps import Map
from nfpipe.loader.object import Object
from nfpipe.loader.program import Program, TestRunResult
from nfpipe.nfabi import OUTCOME_NAMES, SHARED_MAPS, STAT_SLOTS, Verdict
from nfpipe.spec import PipelineSpec
from nfpipe.toolchain import cache_dir, cache_enabled

#: the verdicts a missed tail call may end in (make_plan's miss_verdict)
MISS_VERDICTS = {"pass": Verdict.PASS, "drop": Verdict.DROP, "aborted": Verdict.ABORTED}


@dataclass(frozen=True)
class Counter:
    packets: int
    bytes: int


class Pipeline:
    """All programs and maps of one pipeline; closed together."""

    def __init__(self, plan: Plan, objects: dict[str, Object], entry: Program,
                 fused_style: str | None = None):
        self.plan = plan
        self.objects = objects
        self.entry = entry
        # fused linking: "inline" (one function) or "calls" (a global function per
        # node, when the inlined program was too large for the verifier)
        self.fused_style = fused_style
        self.device = 0             # the offload device's ifindex; 0: runs on the host

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, linking: str | None = None,
                  **load_kw: Any) -> Pipeline:
        """The pipeline file at *path* parsed, validated, built (*linking* overrides the
        file's) and loaded: the one call for running a pipeline from Python::

            with nfpipe.Pipeline.from_file("examples/edge.yaml") as p:
                print(p.test_run(packet).retval, p.edge_counts())
        """
        return cls.from_spec(PipelineSpec.from_file(path), linking=linking, **load_kw)

    @classmethod
    def from_spec(cls, spec: PipelineSpec, *, linking: str | None = None,
                  **load_kw: Any) -> Pipeline:
        return cls.load(build_plan(make_plan(spec, linking=linking)), **load_kw)

    @classmethod
    def load(cls, build: Build, *, ifindexes: dict[str, int] | None = None,
             log_level: int = 0, reuse: Mapping[str, Map] | None = None,
             populate: Collection[str] | None = None,
             offload: OffloadBuild | None = None, device: int = 0) -> Pipeline:
        """Load every program of *build* and fill ``nfp_jmp``.

        *reuse* hands in existing maps by their full names (``fw__rules``,
        ``nfp_stats``): the programs use them instead of creating their own, which
        is how an update of a running pipeline keeps its state; they stay the
        caller's.  *populate* names the nodes whose NF writes its maps from its
        config (default: every node; a node on reused maps already has them).

        *offload* (``compose.offload.offload_build``) loads the offload build instead
        (its constants compiled in, its maps sized for the device), bound to the
        device of ifindex *device* (prog_ifindex/map_ifindex) or, with *device* 0,
        unbound: the same program on the host, where ``test_run`` works."""
        plan = build.plan
        objects: dict[str, Object] = {}
        reuse = dict(reuse or {})
        populated: set[str] = set()      # tail calls: nodes populated as they loaded
        try:
            if offload is not None:
                if not offload.ok or offload.spec is None:
                    raise SpecError(f"pipeline '{plan.spec.name}' cannot be offloaded "
                                    f"({offload.profile}): " + "; ".join(offload.problems))
                given = {k: m for k, m in reuse.items() if k in offload.spec.maps}
                obj = Object.load(offload.spec, log_level=log_level, name=plan.spec.name,
                                  maps=given, kernel_names=kernel_names(plan.spec.name),
                                  ifindex=device)
                objects[FUSED] = obj
                entry = obj.programs[FUSED_PROGRAM]
            elif plan.linking == "fused":
                constants = fused_constants(plan, ifindexes)
                inlined = build.fused_style == "inline"
                ospec = _sized_all(build.objects[FUSED], plan)
                given = {k: m for k, m in reuse.items() if k in ospec.maps}
                memo = _too_large_memo(ospec, constants) if inlined else None
                try:
                    if memo is not None and memo.exists():
                        raise _KnownTooLarge
                    obj = Object.load(ospec, constants=constants, log_level=log_level,
                                      name=plan.spec.name, maps=given,
                                      kernel_names=kernel_names(plan.spec.name))
                except (VerifierError, _KnownTooLarge) as exc:
                    if isinstance(exc, VerifierError) and not (inlined and _too_large(exc)):
                        raise
                    # Inlined, the pipeline exceeds the verifier's budget (instructions,
                    # or the stack of one frame holding every node's locals with the
                    # frame of a function a node calls): give each node its own global
                    # function (verified once) and load that.
                    if memo is not None and not memo.exists():
                        _remember(memo)
                    obj = Object.load(_sized_all(build.fused_with_calls(), plan),
                                      constants=constants, log_level=log_level,
                                      name=plan.spec.name, maps=given,
                                      kernel_names=kernel_names(plan.spec.name))
                objects[FUSED] = obj
                entry = obj.programs[FUSED_PROGRAM]
            else:
                shared: dict[str, Any] = {k: m for k, m in reuse.items()
                                          if k in SHARED_MAPS and k != "nfp_jmp"}

                def load_node(n, shared: dict[str, Any], on_maps=None) -> Object:
                    ospec = _sized(build.objects[n.id], plan, n.id)
                    given = {k: m for k, m in reuse.items()
                             if k.startswith(f"{n.id}__") and k in ospec.maps}
                    given.update(shared)
                    return Object.load(ospec, constants=tailcall_constants(plan, n, ifindexes),
                                       maps=given, log_level=log_level, name=n.id,
                                       kernel_names=kernel_names(plan.spec.name, n.id),
                                       on_maps=on_maps)

                def populate_node(n, obj: Object) -> None:   # (in this thread, as each loads)
                    impl = plan.spec.nodes[n.id].impl
                    if impl is not None and (populate is None or n.id in populate):
                        impl.populate(NodeMaps(obj.maps, n.id))
                    populated.add(n.id)
                if "nfp_jmp" not in shared:       # the first node creates the shared maps
                    _load_on_first_maps(plan.order, load_node, objects, populate_node, shared)
                    shared = {m: objects[plan.order[0].id].maps[m] for m in SHARED_MAPS}
                else:
                    _load_all(list(plan.order), lambda n: load_node(n, shared), objects,
                              populate_node)
                jmp = shared["nfp_jmp"]
                for n in plan.order:
                    jmp[n.index] = objects[n.id].programs[n.id]
                entry = objects[plan.order[0].id].programs[plan.order[0].id]
            pipeline = cls(plan, objects, entry,
                           build.fused_style if plan.linking == "fused" else None)
            pipeline.device = device if offload is not None else 0
            only = offload.nodes if offload is not None else None     # a NIC tier
            for n in plan.order:
                impl = plan.spec.nodes[n.id].impl
                if (only is not None and n.id not in only) or n.id in populated:
                    continue
                if impl is not None and (populate is None or n.id in populate):
                    impl.populate(pipeline.node_maps(n.id))
            return pipeline
        except BaseException:
            for obj in reversed(list(objects.values())):
                obj.close()
            raise

    @staticmethod
    def load_node(build: Build, node: str, maps: Mapping[str, Map], *,
                  populate: bool = False, log_level: int = 0) -> Object:
        """Load one tail-call node's program on *maps* (the running pipeline's
        ``nfp_jmp``, ``nfp_stats``, ``nfp_meta_map``, and the node's own maps when they
        are reused; missing node maps are created and, with *populate*, written by
        its NF).  The caller puts it in its slot."""
        plan = build.plan
        n = plan.nodes[node]
        ospec = _sized(build.objects[node], plan, node)
        given = {k: m for k, m in maps.items() if k in ospec.maps}
        obj = Object.load(ospec, constants=tailcall_constants(plan, n), maps=given,
                          log_level=log_level, name=node,
                          kernel_names=kernel_names(plan.spec.name, node))
        try:
            impl = plan.spec.nodes[node].impl
            if populate and impl is not None:
                impl.populate(NodeMaps(obj.maps, node))
            return obj
        except BaseException:
            obj.close()
            raise

    # --- access -------------------------------------------------------------------------

    def _object_of(self, node: str) -> Object:
        return self.objects[FUSED] if FUSED in self.objects else self.objects[node]

    def node_maps(self, node: str) -> NodeMaps:
        return NodeMaps(self._object_of(node).maps, node)

    @property
    def stats_map(self):
        first = self.objects[FUSED] if FUSED in self.objects else self.objects[
            self.plan.order[0].id]
        return first.maps["nfp_stats"]

    def program(self, node: str) -> Program:
        if FUSED in self.objects:
            return self.entry
        return self.objects[node].programs[node]

    def test_run(self, packet: Any, *, repeat: int = 1) -> TestRunResult:
        """Run the whole pipeline on *packet* in the kernel (entry program + tail calls)."""
        return self.entry.test_run(bytes(packet), repeat=repeat)

    def stats(self) -> dict[str, dict[str, Counter]]:
        """Per node: outcome (port name, verdict, tail_call_miss) → packets, bytes (all CPUs)."""
        return node_stats(self.stats_map, [(n.id, n.index, n.ports) for n in self.plan.order])

    def edge_counts(self) -> dict[str, int]:
        """Packets per edge, named 'node.port -> target'."""
        st = self.stats()
        out = {}
        for n in self.plan.order:
            for t in (t for t in n.targets if t.wired):
                out[f"{n.id}.{t.port} -> {t.node or t.describe()}"] = \
                    st[n.id].get(t.port, Counter(0, 0)).packets
        return out

    def close(self) -> None:
        for obj in reversed(list(self.objects.values())):
            obj.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def node_stats(stats_map, nodes) -> dict[str, dict[str, Counter]]:
    """Read nfp_stats: for each (node id, index, port names), its non-zero outcomes."""
    out: dict[str, dict[str, Counter]] = {}
    for nid, index, ports in nodes:
        row: dict[str, Counter] = {}
        names = dict(enumerate(ports))
        names.update(OUTCOME_NAMES)
        for slot, name in names.items():
            try:
                per_cpu = stats_map[index * STAT_SLOTS + slot]
            except KeyError:
                continue        # past the end of an offloaded stats map the device sized down
            if not isinstance(per_cpu, list):      # offload: one shared array
                per_cpu = [per_cpu]
            per_cpu = [_stat(v) for v in per_cpu]
            c = Counter(sum(v["packets"] for v in per_cpu), sum(v["bytes"] for v in per_cpu))
            if c.packets:
                row[name] = c
        out[nid] = row
    return out


def _load_all(nodes: list, load: Callable[[Any], Object], objects: dict[str, Object],
              then: Callable[[Any, Object], None] | None = None) -> None:
    """``load(n)`` of every node into *objects* (by id, in the order given), several at
    once: the verifier checks each program in its own bpf() call, which releases the
    GIL, so on a machine with more than one CPU the pipeline verifies in parallel.
    ``then(n, obj)`` runs in this thread for each node in order as soon as it is
    loaded (while later ones may still verify), until something fails.  Every object
    that loaded is in *objects* also when another failed (the caller closes them);
    the first failure in the order given is raised."""
    if len(nodes) <= 1 or (os.cpu_count() or 1) == 1:
        for n in nodes:
            objects[n.id] = load(n)
            if then is not None:
                then(n, objects[n.id])
        return
    with ThreadPoolExecutor(min(len(nodes), os.cpu_count() or 1),
                            thread_name_prefix="nfpipe-load") as pool:
        futures = [(n, pool.submit(load, n)) for n in nodes]
        failed: BaseException | None = None
        for n, f in futures:
            try:
                objects[n.id] = f.result()
                if then is not None and failed is None:
                    then(n, objects[n.id])
            except BaseException as exc:
                failed = failed or exc
        if failed is not None:
            raise failed


def _load_on_first_maps(nodes: list, load: Callable[..., Object], objects: dict[str, Object],
                        then: Callable[[Any, Object], None], given: dict[str, Any]) -> None:
    """``_load_all`` of a pipeline whose first node creates the shared maps: the others
    start as soon as those maps exist, not once its program is verified (the first
    node's verification overlaps theirs).  They load on fds of their own of the shared
    maps (the first node's object owns the maps and closes them if it fails), and
    their objects are given the first node's Map objects once all loaded.  *given*:
    the shared maps the first node is handed (an update keeps ``nfp_stats``)."""
    first, rest = nodes[0], nodes[1:]
    if not rest or (os.cpu_count() or 1) == 1:
        objects[first.id] = load(first, given)
        then(first, objects[first.id])
        shared = {m: objects[first.id].maps[m] for m in SHARED_MAPS}
        _load_all(rest, lambda n: load(n, shared), objects, then)
        return
    ready = threading.Event()
    dups: dict[str, Map] = {}

    def publish(maps: dict[str, Map]) -> None:
        dups.update({m: maps[m].dup() for m in SHARED_MAPS})
        ready.set()

    def load_one(n) -> Object:
        if n is first:
            try:
                return load(n, given, on_maps=publish)
            finally:
                ready.set()                 # failed before its maps: the others stop
        ready.wait()
        if len(dups) != len(SHARED_MAPS):
            raise _NoSharedMaps(first.id)
        return load(n, dups)
    try:
        _load_all(nodes, load_one, objects, then)
        owned = objects[first.id].maps
        for n in rest:
            objects[n.id].maps.update({m: owned[m] for m in SHARED_MAPS})
    finally:
        for m in dups.values():
            m.close()


class _NoSharedMaps(Exception):
    """The first node failed before it made the shared maps (its own error is raised)."""


def load_fingerprint(build: Build) -> str | None:
    """A digest of everything ``Pipeline.load(build)`` (no reuse, no ifindexes) puts in
    the kernel: each object's bytes with its constants and map sizes, what populate
    writes (each node's config), the hook, the linking, and this kernel (its release
    and boot).  Two loads with one fingerprint verify and behave the same, so what one
    found out (it passed a smoke test) holds for the other.  None when an object has
    no file to hash."""
    plan = build.plan
    if plan.linking == "fused":
        items = [(FUSED, build.objects[FUSED], fused_constants(plan),
                  _sized_all(build.objects[FUSED], plan))]
    else:
        items = [(n.id, build.objects[n.id], tailcall_constants(plan, n),
                  _sized(build.objects[n.id], plan, n.id)) for n in plan.order]
    h = hashlib.sha256(f"{plan.spec.hook} {plan.linking} {os.uname().release}".encode())
    with contextlib.suppress(OSError):
        h.update(Path("/proc/sys/kernel/random/boot_id").read_bytes())
    for name, ospec, constants, sized in items:
        if ospec.path is None:
            return None
        h.update(name.encode() + b"\0" + Path(ospec.path).read_bytes())
        h.update(repr(sorted(constants.items())).encode())
        h.update(repr(sorted((k, m.max_entries) for k, m in sized.maps.items())).encode())
    for n in plan.spec.nodes.values():
        h.update(json.dumps([n.id, n.kind, n.config], sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def _stat(value) -> dict:
    """A struct nfp_stat: decoded, or raw bytes (a map bound to an offload device has no
    BTF in the kernel, so a map opened from its pin reads bytes)."""
    if isinstance(value, (bytes, bytearray)):
        packets, nbytes = struct.unpack_from("<QQ", value)
        return {"packets": packets, "bytes": nbytes}
    return value


def _too_large(exc: VerifierError) -> bool:
    """Whether the verifier refused a program for its size, not for what it does: past
    its instruction budget (E2BIG), or a call chain whose frames together take more
    than the 512 bytes of stack a program has."""
    return exc.errno == errno.E2BIG or "combined stack size" in (exc.log or "")


class _KnownTooLarge(Exception):
    """This program, with these constants and map sizes, was too large for this kernel's
    verifier before."""


def _too_large_memo(ospec, constants: Mapping[str, Any]) -> Path | None:
    """Where nfpipe remembers that the inlined fused program *ospec* (sized), with
    *constants*, exceeded this kernel's verifier budget: finding that out again costs
    a whole verification to the instruction limit (seconds) on every load.  None when
    the object has no file or the cache is off."""
    if ospec.path is None or not cache_enabled():
        return None
    h = hashlib.sha256(Path(ospec.path).read_bytes())
    h.update(repr(sorted(constants.items())).encode())
    h.update(repr(sorted((k, m.max_entries) for k, m in ospec.maps.items())).encode())
    h.update(os.uname().release.encode())
    return cache_dir() / "verifier" / f"too-large-{h.hexdigest()[:32]}"


def _remember(memo: Path) -> None:
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.touch()
    except OSError:
        pass                      # a cache that cannot be written only costs time


def tailcall_constants(plan: Plan, n, ifindexes: dict[str, int] | None = None
                       ) -> dict[str, Any]:
    """The ``.rodata`` constants of node *n*'s tail-call program: its NF's, its port
    table, its slot, whether it is the entry, the verdict of a missed tail call."""
    ports, redirect = plan.port_table(n, ifindexes)
    constants = hook_constants(plan)
    constants.update({f"{n.id}__{k}": v for k, v in n.constants.items()})
    constants.update({f"{n.id}__nfp_ports": ports, f"{n.id}__nfp_redirect": redirect,
                      f"{n.id}__nfp_node": n.index, f"{n.id}__nfp_is_entry": int(n.is_entry),
                      f"{n.id}__nfp_miss_verdict": int(_verdict_code(plan.miss_verdict))})
    return constants


def _sized_all(ospec, plan: Plan):
    for n in plan.order:
        ospec = _sized(ospec, plan, n.id)
    return ospec


def _sized(ospec, plan: Plan, node: str):
    impl = plan.spec.nodes[node].impl
    return apply_map_sizes(ospec, node, impl) if impl is not None else ospec


def _verdict_code(name: str) -> Verdict:
    return MISS_VERDICTS[name]


def kernel_names(pipeline: str, node: str | None = None):
    """What the kernel (and ``bpftool prog|map show``) calls a pipeline's objects, 15
    bytes at most and unique: programs ``<pipeline>.<node>`` (fused: ``<pipeline>``),
    a node's maps ``<node>.<map>``, the shared ones ``<pipeline>.<stats|jmp|...>``, a
    node's global data ``<node>.rodata``; longer names keep their start and end in a
    digest (``short_kernel_name``).  The pins under /sys/fs/bpf/nfpipe/<pipeline>
    name everything in full."""
    def name(kind: str, obj: str) -> str:
        if kind == "program":
            return short_kernel_name(f"{pipeline}.{node}" if node else pipeline)
        owner, sep, short = obj.partition("__")
        if sep:
            return short_kernel_name(f"{owner}.{short}")
        if obj.startswith("nfp_"):
            return short_kernel_name(f"{pipeline}.{obj[4:]}")
        return short_kernel_name(f"{node or pipeline}{obj}")       # .rodata, .bss
    return name
