"""The steps a first deploy, an update and a repair share: refusing foreign programs,
test-running a throwaway copy, attaching and recording an attachment, pinning
programs and maps under a revision, finding a link-less attachment again, and the
fault hook the crash tests use.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from nfpipe import resources
from nfpipe.attach import (
    Attachment,
    NetlinkXdp,
    Target,
    attach_tc,
    attach_xdp,
    attachment_from_record,
    attachment_record,
    ifindex,
    query,
)
from nfpipe.catalog import NodeMaps, nf_class
from nfpipe.catalog.base import NetworkFunction, SourceNF
from nfpipe.compose.build import map_layouts
from nfpipe.deploy.manifest import Intent, IntentTarget, InterfaceRecord, Manifest, NodeRecord
from nfpipe.deploy.state import (
    link_key,
    pin_name,
    programs_by_pipeline,
    revision_dir,
    write_intent,
)
from nfpipe.errors import AttachError, DeployError, NfpipeError
from nfpipe.kernel import bpffs, syscall as sc
from nfpipe.loader import Map
from nfpipe.nfabi import prefixed
from nfpipe.runtime import Pipeline, load_fingerprint
from nfpipe.toolchain import cache_dir, cache_enabled

log = logging.getLogger("nfpipe.deploy")
T = TypeVar("T")

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


def describe_occupant(e: dict) -> str:
    """'program 7 'xdp_pass' in native mode via netlink' and the like."""
    text = f"program {e.get('prog_id')} '{e.get('prog_name')}'"
    if e.get("mode"):
        text += f" in {e['mode']} mode"
    via = e.get("via")
    if via == "link":
        text += f" held by bpf_link {e.get('link_id')}"
    elif via == "tcx":
        text += f" via tcx link {e['link_id']}" if e.get("link_id") else " via tcx"
    elif via == "clsact":
        text += f" as clsact filter priority {e.get('priority')}"
    else:
        text += f" via {via}"
    return text


def refuse_foreign(targets: list[Target], hook: str, force: bool, root: str,
                   pipeline: str | None = None) -> None:
    """Refuse an interface whose *hook* runs another nfpipe pipeline (always: one
    pipeline per hook, or one of them would never see a packet), or a program nfpipe
    did not deploy (unless *force*; an XDP program held by someone's bpf_link even
    then: only its owner can let it go)."""
    owners = programs_by_pipeline(root)
    for t in targets:
        q = query(t.ifname, t.netns)
        here = occupants(q, hook)
        others = [(owners[e["prog_id"]], e) for e in here
                  if e.get("prog_id") in owners and owners[e["prog_id"]] != pipeline]
        if others:
            name, e = others[0]
            raise AttachError(
                f"{t} already runs nfpipe pipeline '{name}' at {hook} "
                f"({describe_occupant(e)}); an interface runs one pipeline per hook, so "
                f"'nfpipe destroy {name}' first, or put both into one pipeline (--force "
                f"does not take over another pipeline: its state would point at an "
                f"interface it no longer holds)", iface=str(t))
        busy = [e for e in here if e.get("prog_id") not in owners]
        if busy and not force:
            desc = ", ".join(describe_occupant(e) for e in busy)
            raise AttachError(f"{t} already carries {desc}, which nfpipe did not deploy; "
                              f"refusing to replace it (use --force to take over the "
                              f"interface)", iface=str(t))
        held = [e for e in busy if hook == "xdp" and e.get("via") == "link"]
        if held:
            e = held[0]
            raise AttachError(
                f"{t} carries {describe_occupant(e)}, which nfpipe did not deploy; --force "
                f"takes over netlink attachments, but a program held by another's bpf_link "
                f"goes only when its owner lets go (or 'bpftool link detach id "
                f"{e.get('link_id')}')", iface=str(t))


@dataclass
class Takeover:
    """A foreign netlink XDP program ``--force`` replaces on one interface: held open
    and pinned under the pipeline's ``replaced/`` (the intent names the pin), so a
    deploy that fails, or is killed, puts it back."""

    target: Target
    prog: sc.Fd
    prog_id: int
    prog_name: str
    mode: str
    pin: Path
    detached: bool = False

    def record(self) -> dict:
        return {"prog_id": self.prog_id, "prog_name": self.prog_name, "mode": self.mode,
                "pin": str(self.pin)}

    def _handle(self) -> NetlinkXdp:
        return NetlinkXdp(sc.Fd(os.dup(int(self.prog))), iface=self.target.ifname,
                          ifindex=ifindex(self.target.ifname, self.target.netns),
                          netns=self.target.netns, mode=self.mode, prog_id=self.prog_id,
                          prog_name=self.prog_name)

    def make_room(self, mode: str) -> None:
        """Before attaching in *mode*: a foreign program in another mode is detached (the
        kernel runs one XDP mode at a time; for that instant no XDP program runs on the
        interface).  In the same mode the attach replaces it atomically."""
        if self.mode == mode:
            return
        log.warning("%s: --force: detaching program %d '%s' (%s mode, netlink) before "
                    "attaching in %s mode; for that instant no XDP program runs",
                    self.target, self.prog_id, self.prog_name, self.mode, mode)
        h = self._handle()
        try:
            h.detach()
        finally:
            h.close()
        self.detached = True

    def restore(self, ours: Attachment | None) -> None:
        """Put the foreign program back in place of *ours* (None: ours never attached):
        atomically where ours replaced it in the same mode."""
        if ours is None:
            if not self.detached:
                return                         # never replaced: still there
        elif not self.detached and isinstance(ours, NetlinkXdp):
            ours.update(self.prog, check_old=True)
            return
        else:
            ours.detach()
        attach_xdp(self.prog, self.target.ifname, mode=self.mode, netns=self.target.netns,
                   use_link=False, replace=True).close()   # netlink: outlives the fd

    def release(self) -> None:
        """Done with it: close the fd and remove the pin (the kernel frees the program
        once nothing holds it)."""
        self.prog.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pin)
        with contextlib.suppress(OSError):
            self.pin.parent.rmdir()


def hold_foreign(t: Target, hook: str, sdir: Path) -> Takeover | None:
    """For a forced deploy onto *t*: the foreign netlink XDP program there, held and
    pinned, before anything on the interface changes (None: nothing to take over)."""
    if hook != "xdp":
        return None
    here = [e for e in occupants(query(t.ifname, t.netns), hook) if e.get("via") == "netlink"]
    if not here:
        return None
    e = here[0]
    fd = sc.prog_get_fd_by_id(e["prog_id"])
    where = sdir / "replaced" / link_key(t)
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        bpffs.pin(fd, where)
    except BaseException:
        fd.close()
        raise
    return Takeover(t, fd, e["prog_id"], e["prog_name"], e["mode"], where)


def restore_replaced(t: IntentTarget) -> str | None:
    """After a killed forced deploy was undone on *t*: attach the program it had replaced
    again, from its pin, if the XDP hook is empty now; what was done."""
    rec = t.replaced
    if not rec:
        return None
    try:
        here = query(t.iface, t.netns)["xdp"]
        if any(e.get("prog_id") == rec["prog_id"] for e in here):
            return None                                  # never replaced
        if here:
            return (f"not putting back program {rec['prog_id']} on {t.iface}: "
                    f"{describe_occupant(here[0])} is there now")
        with bpffs.open_pinned(rec["pin"]) as fd:
            attach_xdp(fd, t.iface, mode=rec["mode"], netns=t.netns, use_link=False,
                       replace=True).close()
    except (NfpipeError, OSError) as exc:
        return f"could not put back program {rec['prog_id']} on {t.iface}: {exc}"
    return (f"put back program {rec['prog_id']} '{rec['prog_name']}' ({rec['mode']} mode) "
            f"that --force had replaced on {t.iface}")


def smoke_test(built, offload=None) -> None:
    """Load a throwaway copy of the build and run the whole pipeline once in the kernel:
    a surprise shows here, and the real maps and counters start untouched.  With
    *offload* (an OffloadBuild), its program, unbound: an offloaded one cannot run
    under BPF_PROG_TEST_RUN, the same code on the host can."""
    with Pipeline.load(built, offload=offload) as p:
        p.test_run(PROBE)


def smoke_memo(built) -> Path | None:
    """Where nfpipe remembers that a build with this load fingerprint (the same objects,
    constants, map sizes, configs, hook and linking, on this kernel since its boot)
    passed the smoke test; None when the cache is off or the build cannot be hashed."""
    if not cache_enabled():
        return None
    fp = load_fingerprint(built)
    if fp is None:
        return None
    probe = hashlib.sha256(PROBE).hexdigest()[:8]       # what the test sends is part of it
    return cache_dir() / "verifier" / f"smoke-ok-{fp}-{probe}"


def load_smoke_tested(built, load: Callable[[], T], offload=None) -> T:
    """``load()`` (the real load of *built*), with ``smoke_test(built)`` run beside it
    in a thread: the verifier checks the two copies at once (the bpf() calls release
    the GIL), so a deploy waits for one verification instead of two in a row.  If
    the smoke test fails, what ``load`` made is closed and the smoke test's error
    raised; either way nothing of the throwaway copy is left.

    A build whose fingerprint passed before on this kernel since its boot is not
    tested again (a redeploy, a rollback to a known revision): the same programs and
    maps verify and run the same, and the second verification is most of a warm
    deploy's time on a small machine."""
    memo = smoke_memo(built) if offload is None else None   # (the offload build differs)
    if memo is not None and memo.exists():
        return load()
    loaded = _load_beside_smoke_test(built, load, offload)
    if memo is not None:
        with contextlib.suppress(OSError):      # a cache that cannot be written only
            memo.parent.mkdir(parents=True, exist_ok=True)     # costs time
            memo.touch()
    return loaded


def _load_beside_smoke_test(built, load: Callable[[], T], offload=None) -> T:
    with ThreadPoolExecutor(1, thread_name_prefix="nfpipe-smoke") as pool:
        trial = pool.submit(smoke_test, built, offload)
        try:
            loaded = load()
        except BaseException:
            with contextlib.suppress(BaseException):
                trial.result()
            raise
        try:
            trial.result()
        except BaseException:
            loaded.close()
            raise
        return loaded


def attach(entry, t: Target, hook: str, mode: str, force: bool) -> Attachment:
    """Attach *entry* at *hook* of *t*; *force*: replace a foreign netlink XDP program,
    or run in front of foreign TC programs (the first TC verdict other than "next"
    ends the chain: behind them, nfpipe would never see what they pass)."""
    if hook == "xdp":
        return attach_xdp(entry, t.ifname, mode=mode, netns=t.netns, replace=force)
    direction = "ingress" if hook == "tc-ingress" else "egress"
    return attach_tc(entry, t.ifname, direction, netns=t.netns, use=mode, first=force)


def record_intent(sdir: Path, entry_id: int, hook: str, targets: list[Target],
                  takeovers: dict[Target, Takeover] | None = None) -> None:
    """Before attaching: pin which interfaces are about to get program *entry_id*, which
    qdisc each had, and which foreign program --force will replace (see ``Intent``)."""
    takeovers = takeovers or {}
    write_intent(sdir, Intent(entry_id, hook, [
        IntentTarget(t.ifname, t.netns, query(t.ifname, t.netns).get("qdisc"),
                     takeovers[t].record() if t in takeovers else None)
        for t in targets]))


def interface_record(sdir: Path, t: Target, att: Attachment,
                     placement: list[str], key: str | None = None) -> InterfaceRecord:
    """The manifest's record of one attachment: its link, pinned now, or (netlink XDP,
    clsact: nothing to pin) what finds it again.  *key*: its name under links/ when
    it is not the interface's (the NIC's program of a tiered placement)."""
    rec = InterfaceRecord(iface=t.ifname, netns=t.netns, mode=att.mode,
                          key=key or link_key(t),
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


#: the NIC's part of a tiered placement: its link key's suffix, its maps' name prefix
NIC_TIER = "+nic"
NIC_MAPS = "nic:"


def pin_nic_tier(nic, manifest: Manifest, sdir: Path) -> None:
    """Pin the NIC's program and maps of a tiered placement under the revision's nic/,
    recorded as manifest maps named ``nic:<map>``."""
    rdir = revision_dir(sdir, manifest.revision) / "nic"
    manifest.nic_program = str(rdir / "progs" / pin_name(nic.entry.name))
    nic.entry.pin(manifest.nic_program)
    for name, path in pin_maps(nic.objects.values(), rdir, {}).items():
        manifest.maps[NIC_MAPS + name] = path


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


def open_node_maps(m: Manifest, node: str, *, typed: bool = True) -> NodeMaps:
    """The pinned maps of *node* in manifest *m*, opened, as a NodeMaps (the caller
    closes them: ``close_node_maps``).  An offloaded map has no BTF in the kernel (a
    device takes none): it is typed by the node's NF source, built for the host
    (unless *typed* is False: for a look at the maps' sizes only)."""
    prefix = prefixed(node, "")
    maps: dict[str, Map] = {}
    try:
        for k, p in m.maps.items():
            if k.startswith(prefix):
                maps[k] = Map.from_pin(p)
        bare = [k for k, mp in maps.items() if mp.device and not mp.typed]
        if bare and typed:
            layouts = map_layouts(node_source(m, m.node(node)), hook=m.hook, instance=node)
            for k in bare:
                if k in layouts:
                    maps[k].use_types(layouts[k])
    except BaseException:
        for mp in maps.values():
            mp.close()
        raise
    return NodeMaps(maps, node)


def node_source(m: Manifest, node: NodeRecord) -> Path:
    """The C source a deployed node was built from (a catalog NF's, or the user's)."""
    cls = nf_class(node.nf)
    if cls is not SourceNF:
        return resources.nf_source(cls.source_name)
    return Path(m.file).parent / node.nf          # (an absolute nf: stays itself)


def close_node_maps(maps: NodeMaps) -> None:
    for name in maps:
        maps[name].close()
