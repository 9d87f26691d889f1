"""``deploy(file)``: the pipeline in *file* running on its interfaces.  A pipeline that
is not running yet gets a first deploy (here); one that runs gets an update
(``nfpipe.deploy.update``).

A first deploy is transactional: everything is built, loaded and test-run (on a
throwaway copy, so the real maps and counters start empty) before any interface
is touched; an interface already carrying an XDP/TC program nfpipe did not make
is refused unless ``force``; programs and maps are pinned, then the intent to
attach, then each interface is attached; if anything fails, every attachment made
so far is removed and every pin deleted, so each interface is left as it was.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from nfpipe.attach import Target
from nfpipe.compose import build, make_plan
from nfpipe.deploy.diff import code_keys
from nfpipe.deploy.manifest import Manifest
from nfpipe.deploy.placement import ProbesAhead, load_for, offload_load, place
from nfpipe.deploy.repair import recover
from nfpipe.deploy.state import (
    INTENT,
    STATE_ROOT,
    link_key,
    locked,
    read_manifest,
    remove_state,
    state_dir,
    write_manifest,
)
from nfpipe.deploy.steps import (
    NIC_TIER,
    Takeover,
    attach,
    hold_foreign,
    interface_record,
    load_smoke_tested,
    node_record,
    pin_nic_tier,
    pin_pipeline,
    record_intent,
    refuse_foreign,
    require_root,
    targets_of,
)
from nfpipe.deploy.update import update
from nfpipe.errors import NfpipeError
from nfpipe.faults import fault
from nfpipe.graph import warnings_of
from nfpipe.kernel import bpffs
from nfpipe.spec import PipelineSpec

log = logging.getLogger("nfpipe.deploy")


def deploy(file: str | os.PathLike, *, targets: list[Target] | None = None,
           mode: str | None = None, linking: str | None = None, force: bool = False,
           root: str = STATE_ROOT, progress=None) -> Manifest:
    """Deploy the pipeline in *file* onto *targets* (default: its ``interfaces``), or,
    if it runs already, update it to *file*.  Returns the new manifest; an update's
    has ``update`` set (how, and what happened to each node)."""
    require_root()
    say = progress or (lambda _msg: None)
    spec = PipelineSpec.from_file(file)
    for w in spec.warnings + warnings_of(spec):
        log.warning("%s: warning: %s", w.pos, w.message)
    with locked(spec.name, root):
        sdir = state_dir(spec.name, root)
        recover(sdir)
        old = read_manifest(sdir)
        if old is None:
            return _first_deploy(spec, file, targets, mode or spec.mode, linking, force,
                                 root, say)
        return update(spec, file, old, targets=targets, mode=mode, linking=linking,
                      force=force, root=root, say=say)


def _first_deploy(spec, file, targets, mode, linking, force, root, say) -> Manifest:
    targets = targets_of(spec, file, targets)
    plan = make_plan(spec, linking=linking, mode=mode)
    sdir = state_dir(spec.name, root)
    # Everything that can fail without touching an interface happens first.
    refuse_foreign(targets, spec.hook, force, root, spec.name)
    say("building")
    with ProbesAhead(spec.hook, targets) as probes:       # (probing beside the build)
        built = build(plan)
        placements = {t: place(spec.hook, t.ifname, t.netns, mode=mode, build=built,
                               info=probes.info(t)) for t in targets}
    offload = offload_load(placements, spec.name)
    tiers = offload.get("tiers")
    say("loading and test-running")
    keys, whole = code_keys(built)
    nic = None
    if tiers is not None:
        # the host's program is the pipeline (its pins, its nodes); the NIC's beside it
        pipeline = load_smoke_tested(tiers.host, lambda: load_for(tiers.host, {}))
        try:
            nic = load_smoke_tested(built, lambda: load_for(built, offload),
                                    offload=tiers.nic)
        except BaseException:
            pipeline.close()
            raise
    else:
        pipeline = load_smoke_tested(built, lambda: load_for(built, offload),
                                     offload=offload.get("offload"))
    bpffs.ensure_mounted()
    attachments = []
    takeovers: dict[Target, Takeover] = {}
    try:
        fault("loaded")
        manifest = _describe(spec, file, plan, pipeline, keys, whole)
        manifest.mode = mode
        pin_pipeline(pipeline, manifest, sdir, reused={})
        if nic is not None:
            pin_nic_tier(nic, manifest, sdir)
        fault("pinned")
        say("attaching")
        for t in targets if force else ():
            tk = hold_foreign(t, spec.hook, sdir)
            if tk is not None:
                takeovers[t] = tk
        record_intent(sdir, pipeline.entry.id, spec.hook, targets, takeovers)
        for t in targets:
            if t in takeovers:
                takeovers[t].make_room(placements[t].mode)
            if placements[t].mode == "tiered" and nic is not None:
                attachments.append((t, attach(pipeline.entry, t, spec.hook, "native", force)))
                attachments.append((t, attach(nic.entry, t, spec.hook, "offload", force)))
                continue
            attachments.append((t, attach(pipeline.entry, t, spec.hook,
                                          placements[t].mode, force)))
        fault("attached")
        for t, att in attachments:
            tier = placements[t].mode == "tiered" and att.mode == "offload"
            manifest.interfaces.append(interface_record(
                sdir, t, att, placements[t].lines, key=link_key(t) + NIC_TIER if tier
                else None))
        fault("pinned-links")
        write_manifest(sdir, manifest)
        os.unlink(sdir / INTENT)
        for tk in takeovers.values():
            tk.release()
        return manifest
    except BaseException:
        done = dict(attachments)
        for t, att in reversed(attachments):
            try:
                if t not in takeovers:
                    att.detach()
            except NfpipeError:
                pass
        for t, tk in takeovers.items():       # what --force replaced goes back
            try:
                tk.restore(done.get(t))
            except NfpipeError as exc:
                log.error("%s: could not put back program %d: %s", t, tk.prog_id, exc)
        remove_state(sdir)
        raise
    finally:
        for _t, att in attachments:
            try:
                att.close()
            except NfpipeError:
                pass
        for tk in takeovers.values():
            tk.prog.close()
        pipeline.close()
        if nic is not None:
            nic.close()


def _describe(spec, file, plan, pipeline, keys, whole) -> Manifest:
    """The manifest (revision 1) of a loaded, not yet pinned pipeline; pin_pipeline
    fills in the paths."""
    nodes = []
    for n in plan.order:
        impl = plan.spec.nodes[n.id].impl
        nodes.append(node_record(n, impl, keys[n.id],
                                 impl.runtime_state() if impl is not None else None,
                                 prog_id=pipeline.program(n.id).id))
    now = time.time()
    return Manifest(
        revision=1, pipeline=spec.name, file=str(Path(file).resolve()),
        source=Path(file).read_text(), hook=spec.hook, mode=spec.mode,
        linking=plan.linking, fused_style=pipeline.fused_style, program_key=whole,
        plan=plan.to_dict(), nodes=nodes, entry_prog_id=pipeline.entry.id,
        deployed_at=now, updated_at=now,
        history=[{"revision": 1, "at": now, "how": "deploy"}])
