"""Changing a running node without reloading it: runtime config (filter rules, LB VIPs
and backends, NAT forwards) written into its maps, and an LB's retired backends
purged.  Each change is a new revision, written as ``manifest_next`` and rolled
forward like an update."""
from __future__ import annotations

from nfpipe.catalog import nf_class
from nfpipe.catalog.base import runtime_change
from nfpipe.catalog.filter import Filter
from nfpipe.deploy.inspection import manifest_of, node_view
from nfpipe.deploy.manifest import Pending
from nfpipe.deploy.repair import recover, recovered
from nfpipe.deploy.state import (
    MANIFEST_NEXT,
    STATE_ROOT,
    locked,
    replace_manifest,
    state_dir,
    write_manifest,
)
from nfpipe.deploy.steps import close_node_maps, open_node_maps, require_root
from nfpipe.deploy.update import converge
from nfpipe.errors import DeployError, NoSuchObject, RuntimeChangeError


def configure(name: str, node: str, config: dict, *, root: str = STATE_ROOT,
              kind: str | None = None) -> dict:
    """Change a running node's runtime config (filter rules, LB VIPs and backends, NAT
    forwards) in its maps, no program reloaded; the manifest records it.

    *config* replaces the runtime keys it names; the others keep their deployed
    values.  Refused (nothing changes) when the NF cannot change that live, when the
    new config is invalid, or when it would send packets to a port the pipeline
    does not wire."""
    require_root()
    with locked(name, root):
        d = state_dir(name, root)
        m = recovered(d) or manifest_of(name, root)   # none: its NoSuchObject
        entry = m.node(node)
        if kind is not None and entry.nf != kind:
            raise DeployError(f"node '{node}' of '{name}' is a {entry.nf} node, not "
                              f"a {kind}")
        try:                                    # validated and prepared: a refused
            new = runtime_change(nf_class(entry.nf), entry.nf, node, entry.config, config,
                                 m.wired_ports(node))  # change writes nothing
        except RuntimeChangeError as exc:
            raise DeployError(f"{exc}; {exc.hint}") from None
        maps = open_node_maps(m, node, typed=False)
        try:
            new.check_fits(maps)                # an offloaded filter's linear entries
        finally:
            close_node_maps(maps)
        merged = {**entry.config, **config}
        line = f"{node}: runtime — {', '.join(sorted(config))} updated in its maps"
        nxt = m.next_revision("runtime", [line])
        nxt.node(node).config = merged
        nxt.pending = [Pending(node=node, nf=entry.nf, old_config=entry.config,
                               old_state=entry.state, config=merged)]
        write_manifest(d, nxt, name=MANIFEST_NEXT)
        final = converge(d, m, nxt, {node: new})
        return {"pipeline": name, "node": node, "revision": final.revision,
                "config": merged, "lines": [line]}


def set_filter_rules(name: str, node: str, config: dict, *, root: str = STATE_ROOT) -> dict:
    """Replace a deployed filter node's rules and policies while traffic flows (each
    packet sees the old rule set or the new, never a mix)."""
    out = configure(name, node, {k: v for k, v in config.items()
                                 if k in Filter.runtime_keys}, root=root, kind="filter")
    out["rules"] = len(out["config"].get("rules") or [])
    return out


def purge_backends(name: str, node: str, *, root: str = STATE_ROOT) -> list[str]:
    """Let an LB node's retired backends (removed while flows still used them) go: their
    remaining flows are re-balanced on their next packet.  Returns the names purged."""
    require_root()
    with locked(name, root):
        d = state_dir(name, root)
        recover(d)
        m = manifest_of(name, root)
        entry = next((n for n in m.nodes if n.id == node), None)
        if entry is None or entry.nf != "lb":
            raise NoSuchObject(f"pipeline '{name}' has no lb node '{node}'")
        impl, maps = node_view(name, node, root=root)
        try:
            names = impl.purge(maps)
        finally:
            close_node_maps(maps)
        if names:
            nxt = m.next_revision("runtime",
                                  [f"{node}: purged retired backend(s) {', '.join(names)}"])
            nxt.node(node).state = impl.runtime_state()
            replace_manifest(d, nxt)
        return names
