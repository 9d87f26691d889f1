"""Reading deployed pipelines: ``status`` (rebuilt from bpffs and the kernel alone),
``stats`` and ``prometheus`` (the pinned ``nfp_stats``), ``open_map`` (any pinned map
by name) and ``node_view`` (a catalog node's control plane over its live maps, what
``nfpipe rules`` and ``nfpipe backends`` show)."""
from __future__ import annotations

import os
from dataclasses import asdict

from nfpipe.attach import query
from nfpipe.catalog import NetworkFunction, NodeMaps
from nfpipe.deploy.manifest import Manifest, NodeRecord
from nfpipe.deploy.repair import recover
from nfpipe.deploy.state import (
    STATE_ROOT,
    locked,
    manifests,
    pipeline_dirs,
    read_manifest,
    state_dir,
)
from nfpipe.deploy.steps import (
    NIC_MAPS,
    NIC_TIER,
    close_node_maps,
    nf_of,
    occupants,
    open_node_maps,
)
from nfpipe.errors import DeployError, NfpipeError, NoSuchObject
from nfpipe.loader import Map
from nfpipe.runtime import node_stats


def status(name: str | None = None, *, root: str = STATE_ROOT) -> list[dict]:
    """Every deployed pipeline (or *name*), as found in bpffs and the kernel.  As root,
    whatever a killed deploy left is repaired first (unless a deploy is running)."""
    out = []
    for d in pipeline_dirs(root, name):
        repaired: list[str] = []
        if os.geteuid() == 0:
            try:
                with locked(d.name, root):
                    repaired = recover(d)
            except DeployError:
                repaired = ["a deploy of this pipeline is running now"]
        if not d.exists():
            out.append({"pipeline": d.name, "state": "removed", "dir": str(d),
                        "repaired": repaired})
            continue
        m = read_manifest(d)
        if m is None:
            out.append({"pipeline": d.name, "state": "incomplete", "dir": str(d),
                        "repaired": repaired,
                        "hint": f"an interrupted deploy: 'nfpipe destroy {d.name}' cleans up"})
            continue
        ifaces, healthy = [], True
        for i in m.interfaces:
            try:
                q = query(i.iface, i.netns)
                progs = [e.get("prog_id") for e in occupants(q, m.hook)]
                # the NIC's program of a tiered placement is not the entry
                want = i.prog_id if i.key.endswith(NIC_TIER) else m.entry_prog_id
                attached = want in progs
            except NfpipeError as exc:
                attached, progs = False, [str(exc)]
            healthy &= attached
            ifaces.append({**asdict(i), "attached": attached, "now": progs})
        out.append({"pipeline": m.pipeline, "state": "running" if healthy else "degraded",
                    "dir": str(d), "hook": m.hook, "mode": m.mode,
                    "linking": m.linking, "file": m.file, "interfaces": ifaces,
                    "revision": m.revision, "repaired": repaired,
                    "nodes": [{"id": n.id, "nf": n.nf, "slot": n.index, "prog_id": n.prog_id}
                              for n in m.nodes],
                    "deployed_at": m.deployed_at, "updated_at": m.updated_at,
                    "last_update": m.last_change})
    if name is not None and not out:
        raise NoSuchObject(f"no pipeline '{name}' is deployed (nothing in {root})")
    return out


def manifest_of(name: str, root: str = STATE_ROOT) -> Manifest:
    """The manifest of deployed pipeline *name* (a DeployError if there is none)."""
    d = state_dir(name, root)
    m = read_manifest(d) if d.exists() else None
    if m is None:
        raise NoSuchObject(f"no pipeline '{name}' is deployed (nothing in {d})")
    return m


def stats(name: str, *, root: str = STATE_ROOT) -> dict:
    """Per-node, per-outcome counters of a deployed pipeline, read from its pinned maps."""
    m = manifest_of(name, root)
    nodes = [(n.id, n.index, tuple(n.ports)) for n in m.nodes]
    out: dict[str, dict[str, dict[str, int]]] = {n[0]: {} for n in nodes}
    # tiers: the NIC's counters (read through the device) and the host's, added up
    for key in ("nfp_stats", NIC_MAPS + "nfp_stats"):
        if key not in m.maps:
            continue
        with Map.from_pin(m.maps[key]) as sm:
            for nid, row in node_stats(sm, nodes).items():
                for k, c in row.items():
                    have = out[nid].setdefault(k, {"packets": 0, "bytes": 0})
                    have["packets"] += c.packets
                    have["bytes"] += c.bytes
    return out


def prometheus(names: list[str] | None = None, *, root: str = STATE_ROOT) -> str:
    """Every deployed pipeline's per-node counters in the Prometheus text format."""
    counters = {m.pipeline: stats(m.pipeline, root=root) for m in manifests(root)
                if not names or m.pipeline in names}
    return prometheus_text(counters)


#: (name, HELP text, what of a counter) of each family, in the order they are written
FAMILIES = (("nfpipe_packets_total", "Packets per pipeline node and outcome (port name, "
             "verdict or tail_call_miss).", "packets"),
            ("nfpipe_bytes_total", "Bytes per pipeline node and outcome.", "bytes"))


def prometheus_text(counters: dict[str, dict[str, dict[str, dict[str, int]]]]) -> str:
    """pipeline -> node -> outcome -> {packets, bytes} in the Prometheus text exposition
    format: each family's HELP and TYPE, then its samples, then the next family."""
    lines = []
    for family, help_text, what in FAMILIES:
        lines += [f"# HELP {family} {help_text}", f"# TYPE {family} counter"]
        for pipeline in sorted(counters):
            for node, row in counters[pipeline].items():
                for outcome, c in row.items():
                    labels = ",".join(f'{k}="{_label(v)}"' for k, v in
                                      (("pipeline", pipeline), ("node", node),
                                       ("outcome", outcome)))
                    lines.append(f"{family}{{{labels}}} {c[what]}")
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A label value escaped as the exposition format wants (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def open_map(name: str, map_name: str, *, root: str = STATE_ROOT) -> Map:
    """A deployed pipeline's map by its full name ("fw__hits", "nfp_stats"), as a Map."""
    m = manifest_of(name, root)
    if map_name not in m.maps:
        raise NoSuchObject(f"pipeline '{name}' has no map '{map_name}' (it has: "
                          f"{', '.join(sorted(m.maps))})")
    return Map.from_pin(m.maps[map_name])


def node_maps(name: str, node: str, *,
              root: str = STATE_ROOT) -> tuple[Manifest, NodeRecord, NodeMaps]:
    """(manifest, node record, NodeMaps of its pinned maps) of one node of a deployed
    pipeline; the caller closes the maps (``close_node_maps``)."""
    m = manifest_of(name, root)
    entry = m.node(node)
    return m, entry, open_node_maps(m, node)


def node_view(name: str, node: str, *,
              root: str = STATE_ROOT) -> tuple[NetworkFunction, NodeMaps]:
    """(NF object with its control plane restored, NodeMaps) of a deployed catalog node:
    what its rules / backends / counters read from.  Caller closes the maps."""
    _m, entry, maps = node_maps(name, node, root=root)
    try:
        impl = nf_of(entry)
        if impl is None:
            raise DeployError(f"node '{node}' of '{name}' is your own C NF ({entry.nf}); "
                              f"it has no control plane to show")
        impl.restore(entry.state, maps)
        return impl, maps
    except BaseException:
        close_node_maps(maps)
        raise
