"""Deploy: a pipeline built, loaded, checked, attached and pinned so it outlives the CLI;
and updated while it runs.

State lives in bpffs under ``/sys/fs/bpf/nfpipe/<pipeline>/`` (layout in
``nfpipe.deploy.state``): the manifest, one pinned link per interface, and every
program and map, pinned under the revision that created it.

A first ``deploy`` is transactional: everything is built, loaded and test-run
(on a throwaway copy, so the real maps and counters start empty) before any
interface is touched; an interface already carrying an XDP/TC program nfpipe did
not make is refused unless ``force``; if any attach fails, every attachment made
so far is removed and every pin deleted, so each interface is left as it was.

A ``deploy`` of a pipeline that is running is an update (``nfpipe.deploy.diff``
says which kind): runtime config goes into the maps, a changed node is swapped
into its program-array slot, a changed graph gets a new generation of programs
and one atomic switch of the entry point per interface.  Nothing running is
touched until the new programs are loaded, test-run, pinned and described in
``manifest_next``; from there the update only rolls forward — the switch, the new
manifest, then the old revision's pins removed after in-flight packets are done.

One deploy, update or destroy at a time per pipeline (a lock).  A deploy killed at
any point (SIGKILL included) leaves either a directory without a manifest (a first
deploy: the next deploy, status or destroy detaches what it pinned and removes it),
pins no manifest names (removed), or a ``manifest_next`` (the update is finished).
``NFPIPE_FAULT=<stage>`` makes a deploy kill itself at that stage — how the tests
prove it.
"""
from __future__ import annotations

import copy
import os
import signal
import time
from pathlib import Path

from nfpipe.deploy.state import (
    LOCK_DIR, MANIFEST, MANIFEST_NEXT, MANIFEST_VERSION, STATE_ROOT, DeployError, Target,
    locked, manifests, pin_name, pipeline_dirs, prog_ids_pinned, read_manifest, remove_pins,
    remove_state, replace_manifest, revision_dir, state_dir, stray_pins, write_manifest)
from nfpipe.errors import AttachError, NfpipeError

__all__ = ["deploy", "destroy", "status", "stats", "configure", "set_filter_rules",
           "open_map", "node_maps", "prometheus", "read_manifest", "state_dir", "Target",
           "DeployError", "STATE_ROOT", "LOCK_DIR", "FAULT_STAGES"]

FAULT_STAGES = ("loaded", "pinned", "attached", "pinned-links")
UPDATE_FAULT_STAGES = ("update-loaded", "update-next", "update-switched")
GRACE = 0.2        # seconds an old revision stays pinned after the switch (in-flight packets)
PROBE = bytes(12) + b"\x08\x00" + bytes.fromhex("4500001c00000000401100000a0000010a000002") \
    + bytes(8)

_locked = locked            # the name the tests use


def _fault(stage: str) -> None:
    """Test hook: with NFPIPE_FAULT=<stage>, die here as abruptly as SIGKILL does."""
    if os.environ.get("NFPIPE_FAULT") == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise DeployError("only root can deploy (nfpipe needs CAP_BPF and CAP_NET_ADMIN to "
                          "load programs and attach them); run it with sudo")


def _occupant(q: dict, hook: str) -> list[dict]:
    if hook == "xdp":
        return q["xdp"]
    return q["tc"]["ingress" if hook == "tc-ingress" else "egress"]


def _nf_class(nf: str):
    from nfpipe import catalog
    from nfpipe.catalog.base import SourceNF
    return catalog.get(nf) if nf in catalog.KINDS else SourceNF


def _impl_of(node: dict, config: dict | None = None):
    """The NF object of a deployed node (catalog NFs only; a C NF has no control plane)."""
    cls = _nf_class(node["nf"])
    cfg = node.get("config") or {} if config is None else config
    if cls.__name__ == "SourceNF":
        return None
    return cls(cfg)


# --- deploy ---------------------------------------------------------------------------------

def deploy(file: str | os.PathLike, *, targets: list[Target] | None = None,
           mode: str | None = None, linking: str | None = None, force: bool = False,
           root: str = STATE_ROOT, progress=None) -> dict:
    """Deploy the pipeline in *file* onto *targets* (default: its ``interfaces``), or,
    if it runs already, update it to *file*.  Returns the new manifest; an update
    adds ``update`` (how, and what happened to each node)."""
    from nfpipe.spec import PipelineSpec
    _require_root()
    say = progress or (lambda _msg: None)
    spec = PipelineSpec.from_file(file)
    with locked(spec.name, root):
        sdir = state_dir(spec.name, root)
        _recover(sdir)
        old = read_manifest(sdir)
        if old is None:
            return _deploy_new(spec, file, targets, mode or spec.mode, linking, force, root,
                               say)
        return _update(spec, file, old, targets, mode, linking, force, root, say)


def _targets(spec, file, targets) -> list[Target]:
    targets = list(targets or [Target.parse(i) for i in spec.interfaces])
    if not targets:
        raise DeployError(f"{file}: no interface to deploy on: list them under 'interfaces' "
                          f"or give --iface")
    return targets


def _refuse_foreign(targets: list[Target], hook: str, force: bool, root: str) -> None:
    from nfpipe.attach.links import query
    ours = prog_ids_pinned(root)
    for t in targets:
        q = query(t.ifname, t.netns)
        busy = [e for e in _occupant(q, hook) if e.get("prog_id") not in ours]
        if busy and not force:
            desc = ", ".join(f"program {e.get('prog_id')} '{e.get('prog_name')}' via "
                             f"{e.get('via')}" for e in busy)
            raise AttachError(f"{t} already carries {desc}, which nfpipe did not deploy; "
                              f"refusing to replace it (use --force to take over the "
                              f"interface)", iface=str(t))


def _smoke_test(built) -> None:
    """Load a throwaway copy of the build and run the whole pipeline once in the kernel:
    a surprise shows here, and the real maps and counters start untouched."""
    from nfpipe.load.pipeline import Pipeline
    with Pipeline.load(built) as p:
        p.test_run(PROBE)


def _attach(entry, t: Target, hook: str, mode: str, force: bool):
    from nfpipe.attach.links import attach_tc, attach_xdp
    if hook == "xdp":
        return attach_xdp(entry, t.ifname, mode=mode, netns=t.netns, replace=force)
    direction = "ingress" if hook == "tc-ingress" else "egress"
    return attach_tc(entry, t.ifname, direction, netns=t.netns, use=mode)


def _deploy_new(spec, file, targets, mode, linking, force, root, say) -> dict:
    from nfpipe.build.pipeline import build, make_plan
    from nfpipe.deploy.diff import code_keys
    from nfpipe.deploy.placement import place
    from nfpipe.kernel import bpffs
    from nfpipe.load.pipeline import Pipeline

    targets = _targets(spec, file, targets)
    plan = make_plan(spec, linking=linking)
    sdir = state_dir(spec.name, root)
    # Everything that can fail without touching an interface happens first.
    _refuse_foreign(targets, spec.hook, force, root)
    say("building")
    built = build(plan)
    placements = {t: place(spec.hook, t.ifname, t.netns, mode=mode, build=built)
                  for t in targets}
    say("loading and test-running")
    _smoke_test(built)
    keys, whole = code_keys(built)
    pipeline = Pipeline.load(built)
    bpffs.ensure_mounted()
    attachments = []
    try:
        _fault("loaded")
        manifest = _describe(spec, file, plan, pipeline, keys, whole, revision=1)
        manifest["mode"] = mode
        _pin_new(pipeline, manifest, sdir, reused={})
        _fault("pinned")
        say("attaching")
        _write_intent(sdir, pipeline.entry.id, spec.hook, targets)
        for t in targets:
            attachments.append((t, _attach(pipeline.entry, t, spec.hook,
                                           placements[t].mode, force)))
        _fault("attached")
        for t, att in attachments:
            manifest["interfaces"].append(_iface_entry(sdir, t, att, placements[t].lines))
        _fault("pinned-links")
        write_manifest(sdir, manifest)
        os.unlink(sdir / INTENT)
        return manifest
    except BaseException:
        for _t, att in reversed(attachments):
            try:
                att.detach()
            except NfpipeError:
                pass
        remove_state(sdir)
        raise
    finally:
        for _t, att in attachments:
            try:
                att.close()
            except NfpipeError:
                pass
        pipeline.close()


INTENT = "attaching"


def _write_intent(sdir: Path, entry_id: int, hook: str, targets: list[Target]) -> None:
    """Before attaching: which interfaces are about to get program *entry_id*, and whether
    each had a clsact qdisc.  An attachment without a link (netlink XDP, clsact) outlives
    a killed process; this is how the repair finds it and leaves the interface as it was."""
    from nfpipe.attach.links import query
    rows = []
    for t in targets:
        rows.append({"iface": t.ifname, "netns": t.netns,
                     "qdisc_before": query(t.ifname, t.netns).get("qdisc")})
    write_manifest(sdir, {"entry_prog_id": entry_id, "hook": hook, "targets": rows},
                   name=INTENT)


def _iface_entry(sdir: Path, t: Target, att, placement: list[str]) -> dict:
    """The manifest's record of one attachment: its pinned link, or (netlink XDP,
    clsact: nothing to pin) what finds it again."""
    from nfpipe.attach.links import attachment_record
    entry = {"iface": t.ifname, "netns": t.netns, "mode": att.mode,
             "kind": type(att).__name__, "prog_id": att.prog_id, "placement": placement,
             "key": t.key, "link": None, "attachment": None}
    if hasattr(att, "pin"):
        path = str(sdir / "links" / t.key)
        att.pin(path)
        entry["link"] = path
    else:
        entry["attachment"] = attachment_record(att)
    return entry


def _unlinked(rec: dict, prog_ids: set[int]):
    """The netlink-XDP / clsact attachment *rec* describes, as it is now, if it runs one of
    *prog_ids* (else None)."""
    from nfpipe.attach.links import attachment_from_record, query
    q = query(rec["iface"], rec["netns"])
    for e in _occupant(q, "xdp" if rec["kind"] == "xdp" else f"tc-{rec['direction']}"):
        if e.get("prog_id") not in prog_ids:
            continue
        if rec["via"] == "netlink" and e.get("via") == "netlink" and e["mode"] == rec["mode"]:
            return attachment_from_record(rec, e["prog_id"])
        if rec["via"] == "clsact" and e.get("via") == "clsact" and \
                (e["priority"], e["handle"]) == (rec["priority"], rec["handle"]):
            return attachment_from_record(rec, e["prog_id"])
    return None


def _node_entry(n, impl, code: str, state, program: str | None = None,
                prog_id: int | None = None) -> dict:
    """A node of the manifest: its plan, code key, live config and control-plane state,
    and its pinned program."""
    return {"id": n.id, "index": n.index, "ports": list(n.ports), "nf": n.nf, "code": code,
            "config": dict(impl.config) if impl is not None else {}, "state": state,
            "program": program, "prog_id": prog_id}


def _next_revision(m: dict, how: str, lines: list[str]) -> dict:
    """A copy of manifest *m* as the next revision, its history told what changed."""
    nxt = copy.deepcopy(m)
    nxt["revision"] = m["revision"] + 1
    nxt["updated_at"] = now = time.time()
    nxt["history"] = (m.get("history", []) + [{"revision": nxt["revision"], "at": now,
                                               "how": how, "lines": lines}])[-20:]
    return nxt


def _describe(spec, file, plan, pipeline, keys, whole, *, revision: int) -> dict:
    """The manifest of a loaded (not yet pinned) pipeline; _pin_new fills in paths."""
    nodes = []
    for n in plan.order:
        impl = plan.spec.nodes[n.id].impl
        nodes.append(_node_entry(n, impl, keys[n.id],
                                 impl.runtime_state() if impl is not None else None,
                                 prog_id=pipeline.program(n.id).id))
    now = time.time()
    return {
        "version": MANIFEST_VERSION, "revision": revision,
        "pipeline": spec.name, "file": str(Path(file).resolve()),
        "source": Path(file).read_text(), "hook": spec.hook, "mode": spec.mode,
        "linking": plan.linking, "fused_style": pipeline.fused_style,
        "program_key": whole, "plan": plan.to_dict(), "nodes": nodes,
        "entry": {"program": None, "prog_id": pipeline.entry.id},
        "entry_prog_id": pipeline.entry.id, "jmp": None,
        "interfaces": [], "maps": {}, "deployed_at": now, "updated_at": now,
        "history": [{"revision": revision, "at": now, "how": "deploy"}],
    }


def _pin_new(pipeline, manifest: dict, sdir: Path, reused: dict[str, str]) -> None:
    """Pin the programs and maps of *pipeline* under the manifest's revision and record
    their paths; maps in *reused* (name -> path) are already pinned."""
    rdir = revision_dir(sdir, manifest["revision"])
    progs: dict[int, str] = {}
    for node in manifest["nodes"]:
        prog = pipeline.program(node["id"])
        if prog.id not in progs:
            path = str(rdir / "progs" / pin_name(prog.name))
            prog.pin(path)
            progs[prog.id] = path
        node["program"] = progs[prog.id]
        node["prog_id"] = prog.id
    manifest["entry"] = {"program": progs[pipeline.entry.id], "prog_id": pipeline.entry.id}
    manifest["entry_prog_id"] = pipeline.entry.id
    manifest["maps"] = _pin_objects(pipeline.objects.values(), rdir, reused)
    manifest["jmp"] = manifest["maps"].get("nfp_jmp")


def _pin_objects(objects, rdir: Path, reused: dict[str, str]) -> dict[str, str]:
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


# --- updates --------------------------------------------------------------------------------

def _update(spec, file, old, targets, mode, linking, force, root, say) -> dict:
    from nfpipe.build.pipeline import build, make_plan
    from nfpipe.deploy.diff import classify, code_keys
    from nfpipe.deploy.placement import place
    from nfpipe.load.maps import Map

    sdir = state_dir(spec.name, root)
    if spec.hook != old["hook"]:
        raise DeployError(f"pipeline '{spec.name}' runs at hook {old['hook']}; the new file "
                          f"says {spec.hook}, which cannot be switched without a gap: "
                          f"'nfpipe destroy {spec.name}' first, then deploy")
    if targets is None and not spec.interfaces:
        targets = [Target(i["iface"], i["netns"]) for i in old["interfaces"]]
    targets = _targets(spec, file, targets)
    mode = mode or spec.mode
    old_ifaces = {Target(i["iface"], i["netns"]): i for i in old["interfaces"]}
    added = [t for t in targets if t not in old_ifaces]
    _refuse_foreign(added, spec.hook, force, root)

    plan = make_plan(spec, linking=linking,
                     slots={n["id"]: n["index"] for n in old["nodes"]})
    say("building")
    built = build(plan)
    placements = {}
    for t in targets:
        if t not in old_ifaces:
            placements[t] = place(spec.hook, t.ifname, t.netns, mode=mode, build=built)
            continue
        was = old_ifaces[t]["mode"]
        if mode not in ("auto", was):
            raise DeployError(f"{t} runs '{spec.name}' in {was} mode; moving it to {mode} "
                              f"cannot be done without a gap: 'nfpipe destroy {spec.name}' "
                              f"first, then deploy")
    keys, whole = code_keys(built)
    opened: dict[str, Map] = {}
    try:
        for mname, path in old["maps"].items():
            opened[mname] = Map.from_pin(path)
        upd = classify(old, built, keys, whole, {k: m.definition for k, m in opened.items()})
        # What the new programs take over: the shared counters and scratch, and the
        # maps of every node not starting fresh.
        reuse: dict[str, Map] = {k: opened[k] for k in ("nfp_stats", "nfp_meta_map")
                                 if k in opened}
        for n in plan.order:
            if upd.nodes[n.id].action != "fresh":
                reuse.update({k: m for k, m in opened.items() if k.startswith(f"{n.id}__")})
        return _apply_update(spec, file, old, sdir, built, plan, upd, keys, whole, reuse,
                             opened, targets, placements, old_ifaces, force, say)
    finally:
        for m in opened.values():
            m.close()


def _apply_update(spec, file, old, sdir, built, plan, upd, keys, whole, reuse, opened,
                  targets, placements, old_ifaces, force, say) -> dict:
    from nfpipe.load.pipeline import STAT_SLOTS, Pipeline

    old_nodes = {n["id"]: n for n in old["nodes"]}
    pending = []
    for n in plan.order:
        c = upd.nodes[n.id]
        if c.action == "runtime":
            o = old_nodes[n.id]
            pending.append({"node": n.id, "nf": o["nf"], "old_config": o["config"],
                            "old_state": o.get("state"),
                            "config": dict(spec.nodes[n.id].impl.config)})
    iface_change = set(targets) != set(old_ifaces)
    if iface_change:
        if upd.how == "unchanged":
            upd.how, upd.why = "interfaces", "same programs; interfaces changed"
        upd.extra.append("  interfaces: " + ", ".join(
            [f"+{t}" for t in targets if t not in old_ifaces] +
            [f"-{t}" for t in old_ifaces if t not in targets]))
    if upd.how == "unchanged":
        out = dict(old)
        out["update"] = {"how": "unchanged", "lines": upd.lines()}
        return out
    new = _next_revision(old, upd.how, upd.lines())
    new.update({"file": str(Path(file).resolve()), "source": Path(file).read_text(),
                "mode": spec.mode, "plan": plan.to_dict(), "program_key": whole,
                "linking": plan.linking})

    loaded = None
    fresh = {nid for nid, c in upd.nodes.items() if c.action == "fresh"}
    try:
        if upd.how in ("swap", "generation"):
            say("loading and test-running")
            _smoke_test(built)
        if upd.how == "swap":
            nid = upd.swapped
            given = dict(reuse)
            given["nfp_jmp"] = opened["nfp_jmp"]
            loaded = _OneNode(Pipeline.load_node(built, nid, given, populate=nid in fresh),
                              nid)
        elif upd.how == "generation":
            loaded = Pipeline.load(built, reuse=reuse, populate=fresh)
        _fault("update-loaded")
        # the nodes' entries of the new manifest
        nodes = []
        for n in plan.order:
            impl = spec.nodes[n.id].impl
            prev = old_nodes.get(n.id, {})
            c = upd.nodes[n.id]
            state = (prev.get("state") if c.action in ("same", "reload", "runtime")
                     else impl.runtime_state() if impl is not None else None)
            nodes.append(_node_entry(n, impl, keys[n.id], state, prev.get("program"),
                                     prev.get("prog_id")))
        new["nodes"] = nodes
        if loaded is not None:
            # new nodes count from zero: clear their stats rows (a node long gone may
            # have used the slot)
            stats_map = reuse.get("nfp_stats")
            old_slots = {n["index"] for n in old["nodes"]}
            if stats_map is not None:
                for n in plan.order:
                    if n.index not in old_slots:
                        for s in range(STAT_SLOTS):
                            stats_map[n.index * STAT_SLOTS + s] = {"packets": 0, "bytes": 0}
            reused_paths = {k: old["maps"][k] for k in reuse}
            if upd.how == "swap":
                reused_paths["nfp_jmp"] = old["maps"]["nfp_jmp"]
                _pin_swapped(loaded, new, sdir, reused_paths)
            else:
                new["maps"] = {}
                _pin_new(loaded, new, sdir, reused=reused_paths)
        new["fused_style"] = (loaded.fused_style if upd.how == "generation"
                              else old.get("fused_style"))
        # interfaces: kept ones as they are, added ones attached by the switch
        ifaces = []
        for t in targets:
            if t in old_ifaces:
                ifaces.append(old_ifaces[t])
            else:
                ifaces.append({"iface": t.ifname, "netns": t.netns,
                               "mode": placements[t].mode, "kind": None, "prog_id": None,
                               "placement": placements[t].lines, "key": t.key,
                               "link": str(sdir / "links" / t.key), "force": force})
        new["interfaces"] = ifaces
        new["pending"] = pending
        write_manifest(sdir, new, name=MANIFEST_NEXT)
    except BaseException:
        remove_pins(sdir, stray_pins(sdir, [old]))
        raise
    finally:
        if loaded is not None:
            loaded.close()
    _fault("update-next")
    say("switching")
    final = _converge(sdir, old)
    final["update"] = {"how": upd.how, "lines": upd.lines()}
    return final


class _OneNode:
    """A swapped-in node's object with the few Pipeline methods the pinning needs."""

    def __init__(self, obj, node: str):
        self.obj, self.node = obj, node
        self.objects = {node: obj}
        self.fused_style = None

    def program(self, node: str):
        return self.obj.programs[node]

    def close(self) -> None:
        self.obj.close()


def _pin_swapped(one: _OneNode, manifest: dict, sdir: Path, reused: dict[str, str]) -> None:
    rdir = revision_dir(sdir, manifest["revision"])
    prog = one.program(one.node)
    path = str(rdir / "progs" / pin_name(prog.name))
    prog.pin(path)
    for node in manifest["nodes"]:
        if node["id"] == one.node:
            node["program"], node["prog_id"] = path, prog.id
    if manifest["nodes"][0]["id"] == one.node:
        manifest["entry"] = {"program": path, "prog_id": prog.id}
        manifest["entry_prog_id"] = prog.id
    manifest["maps"] = {**manifest["maps"], **_pin_objects([one.obj], rdir, reused)}


def _converge(sdir: Path, current: dict) -> dict:
    """Make the kernel run what ``manifest_next`` describes, then make it the manifest.

    Every step checks before it acts, so running it again after a crash finishes the
    job: runtime config into the maps, program-array slots, links (updated, attached
    for new interfaces, detached for dropped ones), the new manifest, and the pins
    of the previous revision removed once in-flight packets are done."""
    from nfpipe.attach.links import Link
    from nfpipe.load.maps import Map
    from nfpipe.load.program import Program
    nxt = read_manifest(sdir, MANIFEST_NEXT)
    # 1. runtime config
    for p in nxt.get("pending", []):
        node = next(n for n in nxt["nodes"] if n["id"] == p["node"])
        impl = _impl_of({"nf": p["nf"]}, p["old_config"])
        nm = _open_node_maps(nxt, p["node"])
        try:
            impl.restore(p["old_state"], nm)
            impl.update(nm, p["config"])
            node["state"] = impl.runtime_state()
        finally:
            close_node_maps(nm)
    # 2. program-array slots (a swap's switch; a new generation's array is full already)
    if nxt["linking"] == "tailcall" and nxt.get("jmp"):
        with Map.from_pin(nxt["jmp"]) as jmp:
            for n in nxt["nodes"]:
                if jmp.get(n["index"]) != n["prog_id"]:
                    with Program.from_pin(n["program"]) as prog:
                        jmp[n["index"]] = prog
    # 3. links: the entry point, one atomic switch per interface
    ours = prog_ids_pinned(str(sdir.parent))
    with Program.from_pin(nxt["entry"]["program"]) as entry:
        wanted = {i["key"] for i in nxt["interfaces"]}
        for n, i in enumerate(nxt["interfaces"]):
            path, rec = i.get("link"), i.get("attachment")
            if rec is not None:                       # netlink XDP or clsact: no link
                att = _unlinked(rec, ours | {entry.id})
                if att is None:
                    raise DeployError(f"{i['iface']}: the {rec['via']} attachment of this "
                                      f"pipeline is gone; 'nfpipe destroy' and deploy again")
                try:
                    if att.prog_id != entry.id:
                        att.update(entry)
                finally:
                    att.close()
                rec["prog_id"] = i["prog_id"] = entry.id
            elif path and os.path.exists(path):
                with Link.from_pin(path, netns=i["netns"]) as link:
                    if link.prog_id != entry.id:
                        link.update(entry)
                    i["prog_id"] = entry.id
            else:                                     # an interface this update adds
                t = Target(i["iface"], i["netns"])
                _write_intent(sdir, entry.id, nxt["hook"], [t])
                att = _attach(entry, t, nxt["hook"], i["mode"], i.get("force", False))
                try:
                    nxt["interfaces"][n] = _iface_entry(sdir, t, att, i.get("placement", []))
                    replace_manifest(sdir, nxt, name=MANIFEST_NEXT)
                finally:
                    att.close()
                os.unlink(sdir / INTENT)
        for i in current["interfaces"]:
            if i["key"] in wanted:
                continue
            if i.get("attachment"):
                att = _unlinked(i["attachment"], ours | {entry.id})
                if att is not None:
                    att.detach()
                    att.close()
            elif i.get("link") and os.path.exists(i["link"]):
                with Link.from_pin(i["link"], netns=i["netns"]) as link:
                    link.detach()
                os.unlink(i["link"])
    _fault("update-switched")
    # 4. the new manifest; 5. the old revision's pins, once no packet can be in them
    nxt.pop("pending", None)
    replace_manifest(sdir, nxt)
    os.unlink(sdir / MANIFEST_NEXT)
    stray = stray_pins(sdir, [nxt])
    if stray:
        time.sleep(GRACE)
        remove_pins(sdir, stray)
    return nxt


def _recover(sdir: Path) -> list[str]:
    """Finish or undo whatever a killed deploy left in *sdir* (lock held)."""
    if not sdir.exists():
        return []
    current = read_manifest(sdir)
    if current is None:                # a first deploy that died halfway: undo it
        return ["interrupted deploy undone: " + "; ".join(_repair(sdir))]
    if (sdir / MANIFEST_NEXT).exists():
        nxt = _converge(sdir, current)
        return [f"interrupted update finished: revision {nxt['revision']} runs"]
    stray = stray_pins(sdir, [current])
    if stray:
        remove_pins(sdir, stray)
        return [f"removed {len(stray)} pin(s) of an update that did not finish"]
    return []


# --- reading --------------------------------------------------------------------------------

def status(name: str | None = None, *, root: str = STATE_ROOT) -> list[dict]:
    """Every deployed pipeline (or *name*), as found in bpffs and the kernel.  As root,
    whatever a killed deploy left is repaired first (unless a deploy is running)."""
    from nfpipe.attach.links import query
    out = []
    for d in pipeline_dirs(root, name):
        repaired: list[str] = []
        if os.geteuid() == 0:
            try:
                with locked(d.name, root):
                    repaired = _recover(d)
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
        for i in m["interfaces"]:
            try:
                q = query(i["iface"], i["netns"])
                progs = [e.get("prog_id") for e in _occupant(q, m["hook"])]
                attached = m["entry_prog_id"] in progs
            except NfpipeError as exc:
                attached, progs = False, [str(exc)]
            healthy &= attached
            ifaces.append({**i, "attached": attached, "now": progs})
        out.append({"pipeline": m["pipeline"], "state": "running" if healthy else "degraded",
                    "dir": str(d), "hook": m["hook"], "mode": m["mode"],
                    "linking": m["linking"], "file": m["file"], "interfaces": ifaces,
                    "revision": m.get("revision", 1), "repaired": repaired,
                    "nodes": [{"id": n["id"], "nf": n["nf"], "slot": n["index"],
                               "prog_id": n.get("prog_id")} for n in m["nodes"]],
                    "deployed_at": m["deployed_at"], "updated_at": m.get("updated_at"),
                    "last_update": (m.get("history") or [{}])[-1]})
    if name is not None and not out:
        raise DeployError(f"no pipeline '{name}' is deployed (nothing in {root})")
    return out


def _manifest_of(name: str, root: str) -> dict:
    d = state_dir(name, root)
    m = read_manifest(d) if d.exists() else None
    if m is None:
        raise DeployError(f"no pipeline '{name}' is deployed (nothing in {d})")
    return m


def stats(name: str, *, root: str = STATE_ROOT) -> dict:
    """Per-node, per-outcome counters of a deployed pipeline, read from its pinned maps."""
    from nfpipe.load.maps import Map
    from nfpipe.load.pipeline import node_stats
    m = _manifest_of(name, root)
    with Map.from_pin(m["maps"]["nfp_stats"]) as sm:
        rows = node_stats(sm, [(n["id"], n["index"], tuple(n["ports"])) for n in m["nodes"]])
    return {nid: {k: {"packets": c.packets, "bytes": c.bytes} for k, c in row.items()}
            for nid, row in rows.items()}


def destroy(name: str, *, root: str = STATE_ROOT) -> list[str]:
    """Detach and unpin everything a deploy of *name* made; returns what was removed."""
    _require_root()
    d = state_dir(name, root)
    if not d.exists():
        raise DeployError(f"no pipeline '{name}' is deployed (nothing in {d})")
    with locked(name, root):
        return _repair(d)


def _repair(d: Path) -> list[str]:
    """Detach everything this pipeline attached (pinned links; netlink XDP and clsact
    attachments from the manifests' records and a deploy's intent), then remove *d*."""
    from nfpipe.attach.links import Link
    found: list[dict] = []
    for mname in (MANIFEST, MANIFEST_NEXT, INTENT):
        try:
            m = read_manifest(d, mname) or {}
        except (NfpipeError, OSError, ValueError):
            m = {}
        found.append(m)
    netns_of = {i.get("link"): i.get("netns") for m in found for i in m.get("interfaces", [])}
    ours = prog_ids_pinned(str(d.parent)) | {m.get("entry_prog_id") for m in found}
    done = []
    links = d / "links"
    for path in sorted(links.iterdir()) if links.is_dir() else []:
        netns = netns_of.get(str(path))    # only names the interface; detach needs none
        try:
            with Link.from_pin(str(path), netns=netns) as link:
                link.detach()
            done.append(f"detached {path.name.replace('@', ':')}")
        except NfpipeError as exc:
            done.append(f"link {path.name}: {exc}")
    records = [i["attachment"] for m in found for i in m.get("interfaces", [])
               if i.get("attachment")]
    intent = found[2]
    for t in intent.get("targets", []):        # attached by a deploy killed before its manifest
        records += _intent_records(t, intent["hook"], intent["entry_prog_id"])
    seen = set()
    for rec in records:
        key = (rec["iface"], rec["netns"], rec["via"], rec.get("priority"), rec.get("mode"))
        if key in seen:
            continue
        seen.add(key)
        try:
            att = _unlinked(rec, ours)
            if att is not None:
                att.detach()
                att.close()
                done.append(f"detached {rec['via']} {rec['iface']}")
        except NfpipeError as exc:
            done.append(f"{rec['via']} {rec['iface']}: {exc}")
    remove_state(d)
    done.append(f"removed {d}")
    return done


def _intent_records(t: dict, hook: str, prog_id: int) -> list[dict]:
    """Records of the link-less attachments of *prog_id* on an interface of an intent."""
    from nfpipe.attach.links import query
    try:
        q = query(t["iface"], t["netns"])
    except NfpipeError:
        return []
    out = []
    for e in _occupant(q, hook):
        if e.get("prog_id") != prog_id or e.get("via") not in ("netlink", "clsact"):
            continue
        rec = {"via": e["via"], "kind": "xdp" if hook == "xdp" else "tc",
               "iface": t["iface"], "ifindex": q["ifindex"], "netns": t["netns"],
               "mode": e.get("mode", "clsact"), "prog_id": prog_id,
               "direction": None if hook == "xdp" else hook.split("-", 1)[1]}
        if e["via"] == "clsact":
            rec.update(priority=e["priority"], handle=e["handle"],
                       created_qdisc=t.get("qdisc_before") is None)
        out.append(rec)
    return out


def open_map(name: str, map_name: str, *, root: str = STATE_ROOT):
    """A deployed pipeline's map by its full name ("fw__hits", "nfp_stats"), as a Map."""
    from nfpipe.load.maps import Map
    m = _manifest_of(name, root)
    if map_name not in m["maps"]:
        raise DeployError(f"pipeline '{name}' has no map '{map_name}' (it has: "
                          f"{', '.join(sorted(m['maps']))})")
    return Map.from_pin(m["maps"][map_name])


def prometheus(names: list[str] | None = None, *, root: str = STATE_ROOT) -> str:
    """Every deployed pipeline's per-node counters in the Prometheus text format."""
    lines = ["# HELP nfpipe_packets_total Packets per pipeline node and outcome "
             "(port name, verdict or tail_call_miss).",
             "# TYPE nfpipe_packets_total counter",
             "# HELP nfpipe_bytes_total Bytes per pipeline node and outcome.",
             "# TYPE nfpipe_bytes_total counter"]
    samples = []
    for m in manifests(root):
        if names and m["pipeline"] not in names:
            continue
        for node, row in stats(m["pipeline"], root=root).items():
            for outcome, c in row.items():
                labels = f'pipeline="{m["pipeline"]}",node="{node}",outcome="{outcome}"'
                samples.append(f"nfpipe_packets_total{{{labels}}} {c['packets']}")
                samples.append(f"nfpipe_bytes_total{{{labels}}} {c['bytes']}")
    return "\n".join(lines + sorted(samples)) + "\n"


def node_maps(name: str, node: str, *, root: str = STATE_ROOT):
    """(manifest, node entry, NodeMaps of its pinned maps) of one node of a deployed
    pipeline; the caller closes the maps (``close_node_maps``)."""
    m = _manifest_of(name, root)
    nodes = {n["id"]: n for n in m["nodes"]}
    if node not in nodes:
        raise DeployError(f"pipeline '{name}' has no node '{node}' (nodes: "
                          f"{', '.join(nodes)})")
    return m, nodes[node], _open_node_maps(m, node)


def _open_node_maps(m: dict, node: str):
    """The pinned maps of *node* in manifest *m*, opened, as a NodeMaps."""
    from nfpipe.catalog.base import NodeMaps
    from nfpipe.load.maps import Map
    prefix = f"{node}__"
    return NodeMaps({k: Map.from_pin(p) for k, p in m["maps"].items() if k.startswith(prefix)},
                    node)


def close_node_maps(maps) -> None:
    for name in maps:
        maps[name].close()


def node_view(name: str, node: str, *, root: str = STATE_ROOT):
    """(NF object with its control plane restored, NodeMaps) of a deployed catalog node:
    what its rules / backends / counters read from.  Caller closes the maps."""
    _m, entry, maps = node_maps(name, node, root=root)
    try:
        impl = _impl_of(entry)
        if impl is None:
            raise DeployError(f"node '{node}' of '{name}' is your own C NF ({entry['nf']}); "
                              f"it has no control plane to show")
        impl.restore(entry.get("state"), maps)
        return impl, maps
    except BaseException:
        close_node_maps(maps)
        raise


def configure(name: str, node: str, config: dict, *, root: str = STATE_ROOT,
              kind: str | None = None) -> dict:
    """Change a running node's runtime config (filter rules, LB VIPs and backends, NAT
    forwards) in its maps, no program reloaded; the manifest records it.

    *config* replaces the runtime keys it names; the others keep their deployed
    values.  Refused (nothing changes) when the NF cannot change that live, when the
    new config is invalid, or when it would send packets to a port the pipeline
    does not wire."""
    _require_root()
    with locked(name, root):
        d = state_dir(name, root)
        _recover(d)
        m = _manifest_of(name, root)
        nodes = {n["id"]: n for n in m["nodes"]}
        if node not in nodes:
            raise DeployError(f"pipeline '{name}' has no node '{node}' (nodes: "
                              f"{', '.join(nodes)})")
        entry = nodes[node]
        if kind is not None and entry["nf"] != kind:
            raise DeployError(f"node '{node}' of '{name}' is a {entry['nf']} node, not "
                              f"a {kind}")
        old = _impl_of(entry)
        if old is None or not old.runtime_keys:
            raise DeployError(f"node '{node}' ({entry['nf']}) has no config that changes "
                              f"at runtime; edit the pipeline file and 'nfpipe deploy' it")
        unknown = set(config) - set(old.runtime_keys)
        if unknown:
            raise DeployError(f"{entry['nf']} node '{node}': {', '.join(sorted(unknown))} "
                              f"cannot change at runtime (runtime keys: "
                              f"{', '.join(sorted(old.runtime_keys))}); edit the pipeline "
                              f"file and 'nfpipe deploy' it")
        merged = {**entry["config"], **config}
        new = _impl_of(entry, merged)           # validates: a SpecError changes nothing
        wired = list(next(n for n in m["plan"]["nodes"] if n["id"] == node)["ports"])
        unwired = [p for p in new.used_ports() if p not in wired]
        if unwired:
            raise DeployError(f"the new config sends packets to port(s) {', '.join(unwired)} "
                              f"of '{node}', which the deployed pipeline does not wire "
                              f"(wired: {', '.join(wired)}); redeploy with those edges")
        line = f"{node}: runtime — {', '.join(sorted(config))} updated in its maps"
        nxt = _next_revision(m, "runtime", [line])
        for n in nxt["nodes"]:
            if n["id"] == node:
                n["config"] = merged
        nxt["pending"] = [{"node": node, "nf": entry["nf"], "old_config": entry["config"],
                           "old_state": entry.get("state"), "config": merged}]
        write_manifest(d, nxt, name=MANIFEST_NEXT)
        final = _converge(d, m)
        return {"pipeline": name, "node": node, "revision": final["revision"],
                "config": merged, "lines": [line]}


def set_filter_rules(name: str, node: str, config: dict, *, root: str = STATE_ROOT) -> dict:
    """Replace a deployed filter node's rules and policies while traffic flows (each
    packet sees the old rule set or the new, never a mix)."""
    from nfpipe.catalog.filter import Filter
    out = configure(name, node, {k: v for k, v in config.items()
                                 if k in Filter.runtime_keys}, root=root, kind="filter")
    out["rules"] = len(out["config"].get("rules") or [])
    return out


def purge_backends(name: str, node: str, *, root: str = STATE_ROOT) -> list[str]:
    """Let an LB node's retired backends (removed while flows still used them) go: their
    remaining flows are re-balanced on their next packet.  Returns the names purged."""
    _require_root()
    with locked(name, root):
        d = state_dir(name, root)
        _recover(d)
        m = _manifest_of(name, root)
        entry = next((n for n in m["nodes"] if n["id"] == node), None)
        if entry is None or entry["nf"] != "lb":
            raise DeployError(f"pipeline '{name}' has no lb node '{node}'")
        impl, maps = node_view(name, node, root=root)
        try:
            names = impl.purge(maps)
        finally:
            close_node_maps(maps)
        if names:
            nxt = _next_revision(m, "runtime",
                                 [f"{node}: purged retired backend(s) {', '.join(names)}"])
            next(n for n in nxt["nodes"] if n["id"] == node)["state"] = impl.runtime_state()
            replace_manifest(d, nxt)
        return names
