"""The steps a first deploy, an update and a repair share: refusing foreign programs,
test-running a throwaway copy, attaching and recording an attachment, pinning
programs and maps under a revision, finding a link-less attachment again, and the
fault hook the crash tests use.
"""
from __future__ import annotations

import os
from pathlib import Path

from nfpipe.attach import (
    Attachment,
    Target,
    attach_tc,
    attach_xdp,
    attachment_from_record,
    attachment_record,
    query,
)
from nfpipe.catalog import NodeMaps, nf_class
from nfpipe.catalog.base import NetworkFunction, SourceNF
from nfpipe.deploy.manifest import Intent, IntentTarget, InterfaceRecord, Manifest, NodeRecord
from nfpipe.deploy.state import link_key, pin_name, prog_ids_pinned, revision_dir, write_intent
from nfpipe.errors import AttachError, DeployError
from nfpipe.loader import Map
from nfpipe.nfabi import prefixed
from nfpipe.runtime import Pipeline

#: the packet a throwaway copy of every build is test-run with (UDP 10.0.0.1 -> 10.0.0.2)
PROBE = bytes(12) + b"\x08\x00" + bytes.fromhex("4500001c00000000401100000a0000010a000002") \
    + bytes(8)
#: stages of a first deploy and of an update at which NFPIPE_FAULT=<stage> kills it
FAULT_STAGES = ("loaded", "pinned", "attached", "pinned-links")
UPDATE_FAULT_STAGES = ("update-loaded", "update-next", "update-switched")


def require_root() -> None:
    if os.geteuid() != 0:
        raise DeployError("only root can deploy (nfpipe needs CAP_BPF and CAP_NET_ADMIN to "
                          "load programs and attach them); run it with sudo")


def occupants(q: dict, hook: str) -> list[dict]:
    """What ``query`` found at pipeline hook *hook* ("xdp", "tc-ingress", "tc-egress")."""
    if hook == "xdp":
        return q["xdp"]
    return q["tc"]["ingress" if hook == "tc-ingress" else "egress"]


def nf_of(node: NodeRecord, config: dict | None = None) -> NetworkFunction | None:
    """The NF object of a deployed node with its deployed *config* (or the one given);
    None for a C NF, which has no control plane."""
    cls = nf_class(node.nf)
    if cls is SourceNF:
        return None
    return cls(node.config if config is None else config)


def targets_of(spec, file, targets: list[Target] | None) -> list[Target]:
    targets = list(targets or [Target.parse(i) for i in spec.interfaces])
    if not targets:
        raise DeployError(f"{file}: no interface to deploy on: list them under 'interfaces' "
                          f"or give --iface")
    return targets


def refuse_foreign(targets: list[Target], hook: str, force: bool, root: str) -> None:
    """Refuse an interface carrying, at *hook*, a program nfpipe did not deploy."""
    ours = prog_ids_pinned(root)
    for t in targets:
        q = query(t.ifname, t.netns)
        busy = [e for e in occupants(q, hook) if e.get("prog_id") not in ours]
        if busy and not force:
            desc = ", ".join(f"program {e.get('prog_id')} '{e.get('prog_name')}' via "
                             f"{e.get('via')}" for e in busy)
            raise AttachError(f"{t} already carries {desc}, which nfpipe did not deploy; "
                              f"refusing to replace it (use --force to take over the "
                              f"interface)", iface=str(t))


def smoke_test(built) -> None:
    """Load a throwaway copy of the build and run the whole pipeline once in the kernel:
    a surprise shows here, and the real maps and counters start untouched."""
    with Pipeline.load(built) as p:
        p.test_run(PROBE)


def attach(entry, t: Target, hook: str, mode: str, force: bool) -> Attachment:
    if hook == "xdp":
        return attach_xdp(entry, t.ifname, mode=mode, netns=t.netns, replace=force)
    direction = "ingress" if hook == "tc-ingress" else "egress"
    return attach_tc(entry, t.ifname, direction, netns=t.netns, use=mode)


def record_intent(sdir: Path, entry_id: int, hook: str, targets: list[Target]) -> None:
    """Before attaching: pin which interfaces are about to get program *entry_id*, and
    which qdisc each had (see ``Intent``)."""
    write_intent(sdir, Intent(entry_id, hook, [
        IntentTarget(t.ifname, t.netns, query(t.ifname, t.netns).get("qdisc"))
        for t in targets]))


def interface_record(sdir: Path, t: Target, att: Attachment,
                     placement: list[str]) -> InterfaceRecord:
    """The manifest's record of one attachment: its link, pinned now, or (netlink XDP,
    clsact: nothing to pin) what finds it again."""
    rec = InterfaceRecord(iface=t.ifname, netns=t.netns, mode=att.mode, key=link_key(t),
                          kind=type(att).__name__, prog_id=att.prog_id, placement=placement)
    if hasattr(att, "pin"):
        path = str(sdir / "links" / rec.key)
        att.pin(path)
        rec.link = path
    else:
        rec.attachment = attachment_record(att)
    return rec


def find_unlinked(rec: dict, prog_ids: set[int]) -> Attachment | None:
    """The netlink-XDP / clsact attachment *rec* describes, as it is now, if it runs one of
    *prog_ids* (else None)."""
    q = query(rec["iface"], rec["netns"])
    for e in occupants(q, "xdp" if rec["kind"] == "xdp" else f"tc-{rec['direction']}"):
        if e.get("prog_id") not in prog_ids:
            continue
        if rec["via"] == "netlink" and e.get("via") == "netlink" and e["mode"] == rec["mode"]:
            return attachment_from_record(rec, e["prog_id"])
        if rec["via"] == "clsact" and e.get("via") == "clsact" and \
                (e["priority"], e["handle"]) == (rec["priority"], rec["handle"]):
            return attachment_from_record(rec, e["prog_id"])
    return None


def node_record(n, impl: NetworkFunction | None, code: str, state,
                program: str | None = None, prog_id: int | None = None) -> NodeRecord:
    """A node of the manifest: its plan (*n*, a NodePlan), code key, live config and
    control-plane state, and its pinned program."""
    return NodeRecord(id=n.id, index=n.index, ports=list(n.ports), nf=n.nf, code=code,
                      config=dict(impl.config) if impl is not None else {}, state=state,
                      program=program, prog_id=prog_id)


def pin_pipeline(pipeline, manifest: Manifest, sdir: Path, reused: dict[str, str]) -> None:
    """Pin the programs and maps of *pipeline* under the manifest's revision and record
    their paths; maps in *reused* (name -> path) are already pinned."""
    rdir = revision_dir(sdir, manifest.revision)
    progs: dict[int, str] = {}
    for node in manifest.nodes:
        prog = pipeline.program(node.id)
        if prog.id not in progs:
            path = str(rdir / "progs" / pin_name(prog.name))
            prog.pin(path)
            progs[prog.id] = path
        node.program = progs[prog.id]
        node.prog_id = prog.id
    manifest.entry_program = progs[pipeline.entry.id]
    manifest.entry_prog_id = pipeline.entry.id
    manifest.maps = pin_maps(pipeline.objects.values(), rdir, reused)
    manifest.jmp = manifest.maps.get("nfp_jmp")


def pin_maps(objects, rdir: Path, reused: dict[str, str]) -> dict[str, str]:
    """Pin the maps of *objects* under *rdir* (those in *reused*, name -> path, are
    pinned already); returns every map's path by name.  Global data is not pinned:
    the programs hold it, and nothing shares or reads it."""
    maps: dict[str, str] = {}
    for obj in objects:
        for mname, m in obj.maps.items():
            if mname in maps or obj.spec.maps[mname].is_global_data:
                continue
            if mname in reused:
                maps[mname] = reused[mname]
                continue
            path = str(rdir / "maps" / pin_name(mname))
            m.pin(path)
            maps[mname] = path
    return maps


def open_node_maps(m: Manifest, node: str) -> NodeMaps:
    """The pinned maps of *node* in manifest *m*, opened, as a NodeMaps (the caller
    closes them: ``close_node_maps``)."""
    prefix = prefixed(node, "")
    return NodeMaps({k: Map.from_pin(p) for k, p in m.maps.items() if k.startswith(prefix)},
                    node)


def close_node_maps(maps: NodeMaps) -> None:
    for name in maps:
        maps[name].close()
