"""What an update of a running pipeline has to do: compare the deployed manifest with a
new build, node by node, and choose how to switch.

Each node has a *code key* (a digest of everything its program depends on: the
compiled object or NF source, its constants, port table and slot, its map sizes)
and a *config*.  Per node:

``same``     code and config unchanged: nothing to do (in a new generation its
             program is reloaded on its own maps);
``runtime``  code unchanged, config changed only in keys the NF changes live
             (``runtime_keys``: filter rules, LB backends, NAT forwards): its maps
             are updated in place, no program reloads;
``reload``   code changed, config not: a new program on the node's existing maps
             (its state — connections, counters — carries over when the maps'
             definitions still match);
``fresh``    code and config changed, a new node, or a node of another kind: a new
             program on new maps written from the config (state starts empty; both
             at once cannot be switched consistently on shared maps);
``removed``  gone from the pipeline.

Then the switch:

``unchanged``   nothing differs;
``runtime``     only runtime config: maps updated, no program touched;
``swap``        tail calls, same nodes in the same slots, exactly one node's
                program changes: it replaces its own slot of ``nfp_jmp`` (or, for
                the entry node, the program of every link) — one atomic step;
``generation``  anything else: every program is loaded again with a new
                ``nfp_jmp`` (state-carrying maps reused as above) and each
                interface's link switches to the new entry in one
                ``BPF_LINK_UPDATE``; a packet runs entirely in the old generation
                or entirely in the new.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfpipe.compose import FUSED, Build
from nfpipe.compose.nodes import apply_map_sizes
from nfpipe.deploy.manifest import Manifest, NodeRecord
from nfpipe.nfabi import prefixed
from nfpipe.runtime.pipeline import fused_constants, tailcall_constants


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def code_keys(build: Build) -> tuple[dict[str, str], str]:
    """(code key per node, key of the whole program set)."""
    plan = build.plan
    keys = {}
    for n in plan.order:
        impl = plan.spec.nodes[n.id].impl
        sizes = impl.map_sizes() if impl is not None else {}
        if plan.linking == "tailcall":
            obj = _file_digest(build.objects[n.id].path)
            keys[n.id] = _digest({"linking": "tailcall", "object": obj, "sizes": sizes,
                                  "constants": tailcall_constants(plan, n)})
        else:
            key = {"linking": "fused", "source": _file_digest(n.source), "sizes": sizes,
                   "constants": n.constants, "slot": n.index,
                   "targets": [t.describe() for t in n.targets]}
            if n.defines:         # only then: the keys of running pipelines stay as they were
                key["defines"] = n.defines
            keys[n.id] = _digest(key)
    if plan.linking == "fused":
        whole = _digest({"object": _file_digest(build.objects[FUSED].path),
                         "constants": fused_constants(plan), "nodes": keys})
    else:
        whole = _digest({"nodes": keys, "entry": plan.order[0].id})
    return keys, whole


@dataclass
class NodeChange:
    id: str
    action: str                  # same | runtime | reload | fresh | removed
    why: str = ""

    @property
    def reloads(self) -> bool:
        return self.action in ("reload", "fresh")


@dataclass
class Update:
    how: str            # unchanged | interfaces | runtime | swap | generation
    nodes: dict[str, NodeChange] = field(default_factory=dict)
    why: str = ""
    extra: list[str] = field(default_factory=list)      # e.g. interfaces added/dropped

    @property
    def swapped(self) -> str | None:
        """The node a swap replaces."""
        if self.how != "swap":
            return None
        return next(c.id for c in self.nodes.values() if c.reloads)

    def lines(self) -> list[str]:
        out = [f"{self.how}: {self.why}"]
        for c in self.nodes.values():
            if c.action != "same":
                out.append(f"  {c.id}: {c.action}" + (f" — {c.why}" if c.why else ""))
        return out + self.extra


def node_map_definitions(build: Build, node: str) -> dict[str, tuple]:
    """The node's own maps in the new build (sized by its config), by full name."""
    plan = build.plan
    ospec = build.objects.get(node) or build.objects[FUSED]
    impl = plan.spec.nodes[node].impl
    if impl is not None:
        ospec = apply_map_sizes(ospec, node, impl)
    return {k: (m.type, m.key_size, m.value_size, m.max_entries, m.flags)
            for k, m in ospec.maps.items() if k.startswith(prefixed(node, ""))}


def classify(old: Manifest, build: Build, keys: dict[str, str], whole: str,
             old_maps: dict[str, tuple]) -> Update:
    """Compare manifest *old* with the new *build* (its *keys* from ``code_keys``);
    *old_maps* holds the definitions of the running pipeline's maps, by name."""
    plan = build.plan
    old_nodes = {n.id: n for n in old.nodes}
    changes: dict[str, NodeChange] = {}
    for n in plan.order:
        impl = plan.spec.nodes[n.id].impl
        o = old_nodes.get(n.id)
        if o is None:
            changes[n.id] = NodeChange(n.id, "fresh", "new node")
        elif o.nf != n.nf:
            changes[n.id] = NodeChange(n.id, "fresh", f"was a {o.nf} node, now {n.nf}")
        else:
            changes[n.id] = _node_change(n.id, o, impl, o.code == keys[n.id])
    for nid, c in changes.items():
        if c.action == "reload":           # a new program on the old maps, if it can
            for name, want in node_map_definitions(build, nid).items():
                if old_maps.get(name) != want:
                    c.action = "fresh"
                    c.why = (f"map {name.split('__', 1)[1]} is new or its definition "
                             f"changed: new program on new maps")
                    break
    for nid in old_nodes:
        if nid not in changes:
            changes[nid] = NodeChange(nid, "removed")

    reloads = [c for c in changes.values() if c.action in ("reload", "fresh", "removed")]
    runtime = [c for c in changes.values() if c.action == "runtime"]
    same_layout = (old.linking == plan.linking and
                   [(n.id, n.index) for n in old.nodes] ==
                   [(n.id, n.index) for n in plan.order])     # entry first in both
    # No node's code changed (slots, port tables and linking are part of it), and for
    # fused linking the one program is the same too (headers are part of it).
    if not reloads and (plan.linking == "tailcall" or old.program_key == whole):
        if runtime:
            return Update("runtime", changes, "config updated in the maps; no program "
                          "reloaded")
        return Update("unchanged", changes, "the running pipeline already is this one")
    if plan.linking == "tailcall" and same_layout and len(reloads) == 1 and \
            reloads[0].action != "removed":
        c = reloads[0]
        where = ("the entry point of every link" if plan.order[0].id == c.id
                 else f"its slot {plan.nodes[c.id].index} of nfp_jmp")
        return Update("swap", changes, f"node {c.id} replaced in {where}")
    what = []
    if old.linking != plan.linking:
        what.append(f"linking {old.linking} -> {plan.linking}")
    if not same_layout and old.linking == plan.linking:
        what.append("graph changed")
    if len(reloads) > 1:
        what.append(f"{len(reloads)} nodes changed")
    if plan.linking == "fused" and not what:
        what.append("fused: one program")
    return Update("generation", changes, "new generation of programs" +
                  (f" ({', '.join(what)})" if what else "") +
                  ", one atomic switch of the entry point per interface")


def _node_change(nid: str, old: NodeRecord, impl, same_code: bool) -> NodeChange:
    old_config = old.config or {}
    if impl is None:                         # no control plane: config = constants
        return NodeChange(nid, "same" if same_code else "reload",
                          "" if same_code else "program changed: new program on its maps")
    changed = impl.changed_keys(old_config)
    keys = ", ".join(sorted(changed))
    if same_code:
        if not changed:
            return NodeChange(nid, "same")
        if not impl.built_in(old_config, impl.config, changed):
            return NodeChange(nid, "runtime", f"{keys} updated in its maps")
        if not impl.maps_depend_on(changed):
            return NodeChange(nid, "same")
        return NodeChange(nid, "fresh", f"{keys} changed, which its maps hold and it cannot "
                          f"change live: new program on new maps")
    if not impl.maps_depend_on(changed):
        return NodeChange(nid, "reload", "program changed" + (f" ({keys})" if keys else "") +
                          ": new program on its maps")
    return NodeChange(nid, "fresh", f"program and {keys} changed: new program on new maps "
                      f"(its state starts empty)")
