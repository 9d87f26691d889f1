"""Repair and removal: finishing or undoing what a killed deploy left (``recover``), and
``destroy``, which detaches and unpins everything a deploy made.

A deploy killed at any point (SIGKILL included) leaves either a directory without
a manifest (a first deploy: detach what it attached, remove the rest), pins no
manifest names (removed), or a ``manifest_next`` (the update is finished).
Whoever takes the pipeline's lock next (deploy, status as root, destroy,
rules, backends) repairs first.
"""
from __future__ import annotations

from pathlib import Path

from nfpipe.attach import Link, query
from nfpipe.attach.tc import remove_empty_clsact
from nfpipe.deploy.manifest import Intent, IntentTarget, Manifest
from nfpipe.deploy.state import (
    MANIFEST,
    MANIFEST_NEXT,
    STATE_ROOT,
    locked,
    prog_ids_pinned,
    read_intent,
    read_manifest,
    remove_pins,
    remove_state,
    state_dir,
    stray_pins,
)
from nfpipe.deploy.steps import find_unlinked, occupants, require_root, restore_replaced
from nfpipe.deploy.update import converge
from nfpipe.errors import NfpipeError, NoSuchObject


def recover(sdir: Path) -> list[str]:
    """Finish or undo whatever a killed deploy left in *sdir* (lock held); what was done."""
    return _recover(sdir)[0]


def recovered(sdir: Path) -> Manifest | None:
    """``recover(sdir)``, then the manifest of what runs (None: nothing is deployed),
    not read again: the one read to recover, or the one an interrupted update was
    finished with."""
    return _recover(sdir)[1]


def _recover(sdir: Path) -> tuple[list[str], Manifest | None]:
    if not sdir.exists():
        return [], None
    current = read_manifest(sdir)
    if current is None:                # a first deploy that died halfway: undo it
        return ["interrupted deploy undone: " + "; ".join(repair(sdir))], None
    if (sdir / MANIFEST_NEXT).exists():
        nxt = converge(sdir, current)
        return [f"interrupted update finished: revision {nxt.revision} runs"], nxt
    stray = stray_pins(sdir, [current])
    if stray:
        remove_pins(sdir, stray)
        return [f"removed {len(stray)} pin(s) of an update that did not finish"], current
    return [], current


def destroy(name: str, *, root: str = STATE_ROOT) -> list[str]:
    """Detach and unpin everything a deploy of *name* made; returns what was removed."""
    require_root()
    d = state_dir(name, root)
    if not d.exists():
        raise NoSuchObject(f"no pipeline '{name}' is deployed (nothing in {d})")
    with locked(name, root):
        return repair(d)


def _readable(read, *args):
    """A record, or None when it is missing or unreadable (a repair goes on without it)."""
    try:
        return read(*args)
    except (NfpipeError, OSError, ValueError):
        return None


def repair(d: Path) -> list[str]:
    """Detach everything this pipeline attached (pinned links; netlink XDP and clsact
    attachments from the manifests' records and a deploy's intent), then remove *d*."""
    found: list[Manifest] = [m for m in (_readable(read_manifest, d, MANIFEST),
                                         _readable(read_manifest, d, MANIFEST_NEXT)) if m]
    intent: Intent | None = _readable(read_intent, d)
    netns_of = {i.link: i.netns for m in found for i in m.interfaces}
    ours = prog_ids_pinned(str(d.parent)) | {m.entry_prog_id for m in found}
    if intent is not None:
        ours.add(intent.entry_prog_id)
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
    records = [i.attachment for m in found for i in m.interfaces if i.attachment]
    if intent is not None:                  # attached by a deploy killed before its manifest
        for t in intent.targets:
            records += _intent_records(t, intent.hook, intent.entry_prog_id)
    seen = set()
    for rec in records:
        key = (rec["iface"], rec["netns"], rec["via"], rec.get("priority"), rec.get("mode"))
        if key in seen:
            continue
        seen.add(key)
        try:
            att = find_unlinked(rec, ours)
            if att is not None:
                att.detach()
                att.close()
                done.append(f"detached {rec['via']} {rec['iface']}")
        except NfpipeError as exc:
            done.append(f"{rec['via']} {rec['iface']}: {exc}")
    if intent is not None and intent.hook != "xdp":
        for t in intent.targets:           # killed between adding the qdisc and the filter
            line = _undo_created_qdisc(t)
            if line:
                done.append(line)
    if intent is not None:
        for t in intent.targets:           # what a killed --force deploy had replaced
            line = restore_replaced(t)
            if line:
                done.append(line)
    remove_state(d)
    done.append(f"removed {d}")
    return done


def _undo_created_qdisc(t: IntentTarget) -> str | None:
    """Remove the clsact qdisc a killed deploy made on *t*: the intent says there was
    none before, and no filter is under it now (neither ours, detached above, nor anyone
    else's, which would keep it)."""
    if t.qdisc_before is not None:
        return None
    try:
        q = query(t.iface, t.netns)
        if q.get("qdisc") != "clsact" or q["tc"]["ingress"] or q["tc"]["egress"]:
            return None
        remove_empty_clsact(t.iface, t.netns)
    except NfpipeError as exc:
        return f"clsact {t.iface}: {exc}"
    return f"removed the clsact qdisc a killed deploy added to {t.iface}"


def _intent_records(t: IntentTarget, hook: str, prog_id: int) -> list[dict]:
    """Records of the link-less attachments of *prog_id* on an interface of an intent."""
    try:
        q = query(t.iface, t.netns)
    except NfpipeError:
        return []
    out = []
    for e in occupants(q, hook):
        if e.get("prog_id") != prog_id or e.get("via") not in ("netlink", "clsact"):
            continue
        rec = {"via": e["via"], "kind": "xdp" if hook == "xdp" else "tc",
               "iface": t.iface, "ifindex": q["ifindex"], "netns": t.netns,
               "mode": e.get("mode", "clsact"), "prog_id": prog_id,
               "direction": None if hook == "xdp" else hook.split("-", 1)[1]}
        if e["via"] == "clsact":
            rec.update(priority=e["priority"], handle=e["handle"],
                       created_qdisc=t.qdisc_before is None)
        out.append(rec)
    return out
