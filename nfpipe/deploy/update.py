"""Updating a running pipeline without a gap (``nfpipe.deploy.diff`` decides how):
runtime config goes into the maps, a changed node is swapped into its program-array
slot, a changed graph gets a new generation of programs and one atomic switch of
the entry point per interface.

Nothing running is touched until the new programs are loaded, test-run, pinned
and described in ``manifest_next``; from there the update only rolls forward
(``converge``): runtime config, slots, links, the new manifest, then the old
revision's pins removed once no packet can be in them.  ``converge`` checks each
step before it acts, so whoever holds the lock after a crash finishes the job.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nfpipe.attach import Link, Target
from nfpipe.catalog import NetworkFunction, NodeMaps, nf_class
from nfpipe.compose import Build, Plan, build, make_plan
from nfpipe.deploy.diff import Update, classify, code_keys
from nfpipe.deploy.manifest import InterfaceRecord, Manifest, Pending
from nfpipe.deploy.placement import Placement, load_for, offload_load, place
from nfpipe.deploy.state import (
    INTENT,
    MANIFEST_NEXT,
    STATE_ROOT,
    link_key,
    pin_name,
    prog_ids_pinned,
    read_manifest,
    remove_pins,
    replace_manifest,
    revision_dir,
    state_dir,
    stray_pins,
    write_manifest,
)
from nfpipe.deploy.steps import (
    NIC_MAPS,
    attach,
    close_node_maps,
    find_unlinked,
    hold_foreign,
    interface_record,
    load_smoke_tested,
    node_record,
    open_node_maps,
    pin_maps,
    pin_pipeline,
    record_intent,
    refuse_foreign,
    targets_of,
)
from nfpipe.errors import DeployError
from nfpipe.faults import fault
from nfpipe.kernel.sync import rcu_barrier
from nfpipe.loader import Map, Object, Program
from nfpipe.nfabi import STAT_SLOTS, prefixed
from nfpipe.runtime import Pipeline
from nfpipe.spec import PipelineSpec


def update(spec: PipelineSpec, file, old: Manifest, *, targets: list[Target] | None,
           mode: str | None, linking: str | None, force: bool, root: str = STATE_ROOT,
           say=lambda _msg: None) -> Manifest:
    """Update the running pipeline *old* to *spec* (lock held, nothing left to repair)."""
    sdir = state_dir(spec.name, root)
    if spec.hook != old.hook:
        raise DeployError(f"pipeline '{spec.name}' runs at hook {old.hook}; the new file "
                          f"says {spec.hook}, which cannot be switched without a gap: "
                          f"'nfpipe destroy {spec.name}' first, then deploy")
    if any(k.startswith(NIC_MAPS) for k in old.maps):
        raise DeployError(f"pipeline '{spec.name}' runs in two tiers (the NIC and native "
                          f"XDP); updating them in place is not supported yet: 'nfpipe "
                          f"destroy {spec.name}' first, then deploy")
    if targets is None and not spec.interfaces:
        targets = [Target(i.iface, i.netns) for i in old.interfaces]
    targets = targets_of(spec, file, targets)
    mode = mode or spec.mode
    old_ifaces = {Target(i.iface, i.netns): i for i in old.interfaces}
    refuse_foreign([t for t in targets if t not in old_ifaces], spec.hook, force, root,
                   spec.name)

    # an offloaded pipeline stays one fused program when its file says "auto"
    offloaded = mode == "offload" or any(i.mode == "offload" for i in old.interfaces)
    plan = make_plan(spec, linking=linking, mode="offload" if offloaded else mode,
                     slots={n.id: n.index for n in old.nodes})
    say("building")
    built = build(plan)
    placements = {}
    for t in targets:
        if t not in old_ifaces:
            placements[t] = place(spec.hook, t.ifname, t.netns, mode=mode, build=built)
            continue
        was = old_ifaces[t].mode
        if mode not in ("auto", was):
            raise DeployError(f"{t} runs '{spec.name}' in {was} mode; moving it to {mode} "
                              f"cannot be done without a gap: 'nfpipe destroy {spec.name}' "
                              f"first, then deploy")
        if was == "offload":
            # the new programs are bound to the same device: the new file must fit too,
            # whole (tiers cannot take over from one offloaded program without a gap)
            p = place(spec.hook, t.ifname, t.netns, mode="offload", build=built)
            if p.mode != "offload":
                raise DeployError(f"{t} runs '{spec.name}' offloaded; the new file fits the "
                                  f"NIC only in part (tiers), which cannot take over without "
                                  f"a gap: 'nfpipe destroy {spec.name}' first, then deploy")
            placements[t] = p
    offload = offload_load(placements, spec.name)
    keys, whole = code_keys(built)
    opened: dict[str, Map] = {}
    try:
        for mname, path in old.maps.items():
            opened[mname] = Map.from_pin(path)
        upd = classify(old, built, keys, whole, {k: m.definition for k, m in opened.items()})
        # What the new programs take over: the shared counters and scratch, and the
        # maps of every node not starting fresh.
        reuse: dict[str, Map] = {k: opened[k] for k in ("nfp_stats", "nfp_meta_map")
                                 if k in opened}
        for n in plan.order:
            if upd.nodes[n.id].action != "fresh":
                reuse.update({k: m for k, m in opened.items()
                              if k.startswith(prefixed(n.id, ""))})
        change = _Change(spec=spec, file=file, old=old, sdir=sdir, built=built, upd=upd,
                         keys=keys, whole=whole, reuse=reuse, opened=opened, targets=targets,
                         placements=placements, old_ifaces=old_ifaces, force=force,
                         offload=offload)
        return change.apply(say)
    finally:
        for m in opened.values():
            m.close()


@dataclass
class _Change:
    """An update decided: the new build, how it switches, and what it takes over."""

    spec: PipelineSpec
    file: str | os.PathLike
    old: Manifest
    sdir: Path
    built: Build
    upd: Update
    keys: dict[str, str]             # code key per node
    whole: str                       # code key of the whole program set
    reuse: dict[str, Map]            # maps the new programs take over, by name
    opened: dict[str, Map]           # every map of the running revision, by name
    targets: list[Target]
    placements: dict[Target, Placement]
    old_ifaces: dict[Target, InterfaceRecord]
    force: bool
    offload: dict = field(default_factory=dict)     # placement.offload_load's keywords
    fresh: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.fresh = {nid for nid, c in self.upd.nodes.items() if c.action == "fresh"}

    @property
    def plan(self) -> Plan:
        return self.built.plan

    def apply(self, say) -> Manifest:
        upd, old = self.upd, self.old
        iface_change = set(self.targets) != set(self.old_ifaces)
        if iface_change:
            if upd.how == "unchanged":
                upd.how, upd.why = "interfaces", "same programs; interfaces changed"
            upd.extra.append("  interfaces: " + ", ".join(
                [f"+{t}" for t in self.targets if t not in self.old_ifaces] +
                [f"-{t}" for t in self.old_ifaces if t not in self.targets]))
        if upd.how == "unchanged":
            old.update = {"how": "unchanged", "lines": upd.lines()}
            return old
        new = old.next_revision(upd.how, upd.lines())
        new.file, new.source = str(Path(self.file).resolve()), Path(self.file).read_text()
        new.mode, new.plan, new.program_key = self.spec.mode, self.plan.to_dict(), self.whole
        new.linking = self.plan.linking
        loaded = None
        try:
            if upd.how in ("swap", "generation"):
                say("loading and test-running")
            if upd.how == "swap":
                nid = upd.swapped
                given = dict(self.reuse)
                given["nfp_jmp"] = self.opened["nfp_jmp"]
                loaded = load_smoke_tested(self.built, lambda: _OneNode(Pipeline.load_node(
                    self.built, nid, given, populate=nid in self.fresh), nid))
            elif upd.how == "generation":
                loaded = load_smoke_tested(self.built, lambda: load_for(
                    self.built, self.offload, reuse=self.reuse, populate=self.fresh),
                    offload=self.offload.get("offload"))
            fault("update-loaded")
            new.nodes = self._node_records()
            if loaded is not None:
                self._zero_new_rows()
                reused_paths = {k: old.maps[k] for k in self.reuse}
                if upd.how == "swap":
                    reused_paths["nfp_jmp"] = old.maps["nfp_jmp"]
                    _pin_swapped(loaded, new, self.sdir, reused_paths)
                else:
                    new.maps = {}
                    pin_pipeline(loaded, new, self.sdir, reused=reused_paths)
            new.fused_style = (loaded.fused_style if upd.how == "generation"
                               else old.fused_style)
            new.interfaces = self._interface_records()
            new.pending = self._pending()
            write_manifest(self.sdir, new, name=MANIFEST_NEXT)
        except BaseException:
            remove_pins(self.sdir, stray_pins(self.sdir, [old]))
            raise
        finally:
            if loaded is not None:
                loaded.close()
        fault("update-next")
        say("switching")
        final = converge(self.sdir, old, new,
                         {p.node: self.spec.nodes[p.node].impl for p in new.pending})
        final.update = {"how": upd.how, "lines": upd.lines()}
        return final

    def _pending(self) -> list[Pending]:
        """The runtime config changes converge writes into the nodes' maps."""
        old_nodes = {n.id: n for n in self.old.nodes}
        out = []
        for n in self.plan.order:
            if self.upd.nodes[n.id].action == "runtime":
                o = old_nodes[n.id]
                impl = self.spec.nodes[n.id].impl
                impl.prepare()                           # refused here, nothing changed yet
                impl.check_fits(NodeMaps(self.opened, n.id))
                out.append(Pending(node=n.id, nf=o.nf, old_config=o.config,
                                   old_state=o.state,
                                   config=dict(self.spec.nodes[n.id].impl.config)))
        return out

    def _node_records(self):
        old_nodes = {n.id: n for n in self.old.nodes}
        out = []
        for n in self.plan.order:
            impl = self.spec.nodes[n.id].impl
            prev = old_nodes.get(n.id)
            action = self.upd.nodes[n.id].action
            if prev is not None and action in ("same", "reload", "runtime"):
                state = prev.state
            else:
                state = impl.runtime_state() if impl is not None else None
            out.append(node_record(n, impl, self.keys[n.id], state,
                                   prev.program if prev else None,
                                   prev.prog_id if prev else None))
        return out

    def _zero_new_rows(self) -> None:
        """New nodes count from zero: clear their stats rows (a node long gone may have
        used the slot)."""
        stats_map = self.reuse.get("nfp_stats")
        if stats_map is None:
            return
        old_slots = {n.index for n in self.old.nodes}
        for n in self.plan.order:
            if n.index not in old_slots:
                for s in range(STAT_SLOTS):
                    key = n.index * STAT_SLOTS + s
                    if key >= stats_map.max_entries:
                        return          # an offloaded map the device sized down
                    # raw zeros: an offloaded map (no BTF in the kernel) takes only bytes
                    stats_map[key] = bytes(stats_map.value_size)

    def _interface_records(self) -> list[InterfaceRecord]:
        """Kept interfaces as they are; added ones, to be attached by converge."""
        out = []
        for t in self.targets:
            if t in self.old_ifaces:
                out.append(self.old_ifaces[t])
            else:
                p = self.placements[t]
                out.append(InterfaceRecord(iface=t.ifname, netns=t.netns, mode=p.mode,
                                           key=link_key(t), placement=p.lines,
                                           link=str(self.sdir / "links" / link_key(t)),
                                           force=self.force))
        return out


class _OneNode:
    """A swapped-in node's object with the few Pipeline methods the pinning needs."""

    def __init__(self, obj: Object, node: str):
        self.obj, self.node = obj, node
        self.objects = {node: obj}
        self.fused_style = None

    def program(self, node: str) -> Program:
        return self.obj.programs[node]

    def close(self) -> None:
        self.obj.close()


def _pin_swapped(one: _OneNode, manifest: Manifest, sdir: Path,
                 reused: dict[str, str]) -> None:
    rdir = revision_dir(sdir, manifest.revision)
    prog = one.program(one.node)
    path = str(rdir / "progs" / pin_name(prog.name))
    prog.pin(path)
    node = manifest.node(one.node)
    node.program, node.prog_id = path, prog.id
    if manifest.nodes[0].id == one.node:
        manifest.entry_program, manifest.entry_prog_id = path, prog.id
    manifest.maps = {**manifest.maps, **pin_maps([one.obj], rdir, reused)}


def converge(sdir: Path, current: Manifest, nxt: Manifest | None = None,
             prepared: Mapping[str, NetworkFunction] | None = None) -> Manifest:
    """Make the kernel run what ``manifest_next`` describes, then make it the manifest.

    Every step checks before it acts, so running it again after a crash finishes the
    job: runtime config into the maps, program-array slots, links (updated, attached
    for new interfaces, detached for dropped ones), the new manifest, and the pins
    of the previous revision removed once in-flight packets are done.  The process
    that has just written ``manifest_next`` hands it over as *nxt* (not read back),
    with the NFs of its pending changes as it validated and prepared them
    (*prepared*, by node: not parsed and compiled again)."""
    if nxt is None:
        nxt = read_manifest(sdir, MANIFEST_NEXT)
    prepared = prepared or {}
    # 1. runtime config
    for p in nxt.pending:
        nm = open_node_maps(nxt, p.node)
        try:
            nxt.node(p.node).state = nf_class(p.nf).change_live(
                nm, p.old_config, p.old_state, p.config, prepared.get(p.node))
        finally:
            close_node_maps(nm)
    # 2. program-array slots (a swap's switch; a new generation's array is full already)
    if nxt.linking == "tailcall" and nxt.jmp:
        with Map.from_pin(nxt.jmp) as jmp:
            for n in nxt.nodes:
                if jmp.get(n.index) != n.prog_id:
                    with Program.from_pin(n.program) as prog:
                        jmp[n.index] = prog
    # 3. links: the entry point, one atomic switch per interface.  What nfpipe put on
    # interfaces (every pipeline's programs: their manifests read) only where an
    # attachment without a link must be found among them.
    ours: set[int] | None = None
    with Program.from_pin(nxt.entry_program) as entry:
        wanted = {i.key for i in nxt.interfaces}
        for n, i in enumerate(nxt.interfaces):
            if i.attachment is not None:              # netlink XDP or clsact: no link
                ours = prog_ids_pinned(str(sdir.parent)) if ours is None else ours
                att = find_unlinked(i.attachment, ours | {entry.id})
                if att is None:
                    raise DeployError(f"{i.iface}: the {i.attachment['via']} attachment of "
                                      f"this pipeline is gone; 'nfpipe destroy' and deploy "
                                      f"again")
                try:
                    if att.prog_id != entry.id:
                        att.update(entry)
                finally:
                    att.close()
                i.attachment["prog_id"] = i.prog_id = entry.id
            elif i.link and os.path.exists(i.link):
                if Link.pinned_prog_id(i.link) != entry.id:
                    with Link.from_pin(i.link, netns=i.netns) as link:
                        link.update(entry)
                i.prog_id = entry.id
            else:                                     # an interface this update adds
                t = Target(i.iface, i.netns)
                tk = hold_foreign(t, nxt.hook, sdir) if i.force else None
                record_intent(sdir, entry.id, nxt.hook, [t], {t: tk} if tk else None)
                try:
                    if tk is not None:
                        tk.make_room(i.mode)
                    att = attach(entry, t, nxt.hook, i.mode, i.force)
                except BaseException:
                    if tk is not None:
                        tk.restore(None)
                        tk.release()
                    raise
                if tk is not None:
                    tk.release()
                try:
                    nxt.interfaces[n] = interface_record(sdir, t, att, i.placement)
                    replace_manifest(sdir, nxt, name=MANIFEST_NEXT)
                finally:
                    att.close()
                os.unlink(sdir / INTENT)
        for i in current.interfaces:
            if i.key in wanted:
                continue
            if i.attachment:
                ours = prog_ids_pinned(str(sdir.parent)) if ours is None else ours
                att = find_unlinked(i.attachment, ours | {entry.id})
                if att is not None:
                    att.detach()
                    att.close()
            elif i.link and os.path.exists(i.link):
                with Link.from_pin(i.link, netns=i.netns) as link:
                    link.detach()
                os.unlink(i.link)
    fault("update-switched")
    # 4. the new manifest; 5. the old revision's pins, once no packet can be in them
    nxt.pending = []
    replace_manifest(sdir, nxt)
    os.unlink(sdir / MANIFEST_NEXT)
    stray = stray_pins(sdir, [nxt])
    if stray:
        rcu_barrier()
        remove_pins(sdir, stray)
    return nxt

