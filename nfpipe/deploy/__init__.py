"""Deploy: a pipeline built, loaded, checked, attached and pinned so it outlives the CLI.

State lives in bpffs under ``/sys/fs/bpf/nfpipe/<pipeline>/``::

    manifest               what was deployed, as JSON in a frozen one-entry array map
                           (bpffs holds only pins; pinned last: its presence means complete)
    links/<netns>@<iface>  the bpf_link of each attachment
    progs/<node>           every node's program (fused: the one program)
    maps/<map>             every map, so its contents stay readable and the program
                           array keeps its entries (the kernel empties a prog array
                           when the last user-space reference to it goes away)

``deploy`` is transactional: everything is built, loaded and test-run before any
interface is touched; an interface already carrying an XDP/TC program nfpipe did
not make is refused unless ``force``; if any attach fails, every attachment made
so far is removed and every pin deleted, so each interface is left as it was.
``status`` rebuilds the picture from bpffs and the kernel alone; ``destroy``
removes exactly what a deploy made.

One deploy or destroy at a time per pipeline: an exclusive lock on
``/run/nfpipe/locks/<pipeline>.lock`` (released by the kernel if the process
dies).  A deploy killed at any point (SIGKILL included) leaves at most a state
directory without a manifest: attachments are bpf links, and a link that was
not pinned yet dies with the process.  ``status`` reports such a directory as
incomplete; the next ``deploy`` or ``destroy`` detaches whatever links it pinned
and removes it.  (``NFPIPE_FAULT=<stage>`` makes a deploy kill itself at that
stage — how the tests prove it.)

Not yet here: hitless updates of a running pipeline.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from nfpipe.errors import AttachError, NfpipeError

STATE_ROOT = "/sys/fs/bpf/nfpipe"
MANIFEST = "manifest"
LOCK_DIR = "/run/nfpipe/locks"
FAULT_STAGES = ("loaded", "attached", "pinned-links", "pinned")


def _fault(stage: str) -> None:
    """Test hook: with NFPIPE_FAULT=<stage>, die here as abruptly as SIGKILL does."""
    if os.environ.get("NFPIPE_FAULT") == stage:
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def _locked(name: str, root: str = STATE_ROOT):
    """Hold the pipeline's lock.  The lock file is removed when no state is left, so the
    lock is retaken if the file was replaced while we waited (the inode check)."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    path = os.path.join(LOCK_DIR, f"{name}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DeployError(f"another nfpipe deploy or destroy of '{name}' is running "
                              f"(pid {holder}); wait for it to finish") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)                  # the file was removed under us: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        if not state_dir(name, root).exists():
            try:
                os.unlink(path)
            except OSError:
                pass
        os.close(fd)


@dataclass(frozen=True)
class Target:
    """One interface, optionally inside a network namespace ("ns:eth0")."""

    ifname: str
    netns: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        ns, sep, name = text.rpartition(":")
        if not name:
            raise NfpipeError(f"bad interface {text!r}: give IFACE or NETNS:IFACE")
        return cls(name, ns if sep else None)

    @property
    def key(self) -> str:
        return pin_name(f"{self.netns or 'root'}@{self.ifname}")

    def __str__(self) -> str:
        return f"{self.netns}:{self.ifname}" if self.netns else self.ifname


class DeployError(NfpipeError):
    """A deploy was refused or failed; nothing it did is left behind."""


def pin_name(name: str) -> str:
    """A bpffs entry name for *name*: bpffs refuses names with '.' (and '/' splits paths)."""
    return name.replace(".", "_").replace("/", "_")


def _require_root() -> None:
    if os.geteuid() != 0:
        raise DeployError("only root can deploy (nfpipe needs CAP_BPF and CAP_NET_ADMIN to "
                          "load programs and attach them); run it with sudo")


def state_dir(name: str, root: str = STATE_ROOT) -> Path:
    return Path(root) / name


def _our_prog_ids(root: str) -> set[int]:
    ids = set()
    for m in _manifests(root):
        ids.update(m.get("programs", {}).values())
    return ids


def _manifests(root: str) -> list[dict]:
    out = []
    base = Path(root)
    if not base.is_dir():
        return out
    for d in sorted(base.iterdir()):
        try:
            m = read_manifest(d)
        except (NfpipeError, OSError, ValueError):
            continue
        if m is not None:
            out.append(m)
    return out


def _occupant(q: dict, hook: str) -> list[dict]:
    if hook == "xdp":
        return q["xdp"]
    return q["tc"]["ingress" if hook == "tc-ingress" else "egress"]


def deploy(file: str | os.PathLike, *, targets: list[Target] | None = None,
           mode: str | None = None, linking: str | None = None, force: bool = False,
           root: str = STATE_ROOT) -> dict:
    """Deploy the pipeline in *file* onto *targets* (default: its ``interfaces``)."""
    from nfpipe.build.pipeline import make_plan
    from nfpipe.spec import PipelineSpec

    _require_root()
    spec = PipelineSpec.from_file(file)
    targets = list(targets or [Target.parse(i) for i in spec.interfaces])
    if not targets:
        raise DeployError(f"{file}: no interface to deploy on: list them under 'interfaces' "
                          f"or give --iface")
    mode = mode or spec.mode
    plan = make_plan(spec, linking=linking)
    with _locked(spec.name, root):
        return _deploy_locked(spec, file, plan, targets, mode, force, root)


def _deploy_locked(spec, file, plan, targets, mode, force, root) -> dict:
    from nfpipe.attach.links import attach_tc, attach_xdp, query
    from nfpipe.build.pipeline import build
    from nfpipe.kernel import bpffs
    from nfpipe.load.pipeline import Pipeline

    sdir = state_dir(spec.name, root)
    if (sdir / MANIFEST).exists():
        raise DeployError(f"pipeline '{spec.name}' is already deployed (state in {sdir}); "
                          f"destroy it first — updating a running pipeline in place is not "
                          f"supported yet")
    if sdir.exists():                 # a deploy that died halfway: undo what it left
        _repair(sdir)

    # Everything that can fail without touching an interface happens first.
    ours = _our_prog_ids(root)
    for t in targets:
        q = query(t.ifname, t.netns)
        busy = [e for e in _occupant(q, spec.hook) if e.get("prog_id") not in ours]
        if busy and not force:
            desc = ", ".join(f"program {e.get('prog_id')} '{e.get('prog_name')}' via "
                             f"{e.get('via')}" for e in busy)
            raise AttachError(f"{t} already carries {desc}, which nfpipe did not deploy; "
                              f"refusing to replace it (use --force to take over the "
                              f"interface)", iface=str(t))
    built = build(plan)
    from nfpipe.deploy.placement import place
    placements = {t: place(spec.hook, t.ifname, t.netns, mode=mode, build=built)
                  for t in targets}
    pipeline = Pipeline.load(built)
    attachments, pins = [], []
    bpffs.ensure_mounted()
    try:
        _fault("loaded")
        probe = bytes(12) + b"\x08\x00" + bytes.fromhex("4500001c00000000401100000a0000010a000002") \
            + bytes(8)
        pipeline.test_run(probe)          # the whole pipeline runs in the kernel: no surprise
        entry = pipeline.entry
        for t in targets:
            chosen = placements[t].mode
            if spec.hook == "xdp":
                att = attach_xdp(entry, t.ifname, mode=chosen, netns=t.netns, replace=force)
            else:
                direction = "ingress" if spec.hook == "tc-ingress" else "egress"
                att = attach_tc(entry, t.ifname, direction, netns=t.netns, use=chosen)
            attachments.append((t, att))
        _fault("attached")
        ifaces = []
        for t, att in attachments:
            entry_info = {"iface": t.ifname, "netns": t.netns, "mode": att.mode,
                          "kind": type(att).__name__, "prog_id": att.prog_id,
                          "placement": placements[t].lines}
            if hasattr(att, "pin"):
                path = str(sdir / "links" / t.key)
                att.pin(path)
                pins.append(path)
                entry_info["link"] = path
            ifaces.append(entry_info)
        _fault("pinned-links")
        programs = {}
        for node in plan.order:
            prog = pipeline.program(node.id)
            if prog.name in programs:
                continue
            path = str(sdir / "progs" / pin_name(prog.name))
            prog.pin(path)
            pins.append(path)
            programs[prog.name] = prog.id
        maps = {}
        for obj in pipeline.objects.values():
            for mname, m in obj.maps.items():
                if mname in maps:
                    continue
                path = str(sdir / "maps" / pin_name(mname))
                m.pin(path)
                pins.append(path)
                maps[mname] = path
        _fault("pinned")
        manifest = {
            "pipeline": spec.name, "file": str(Path(file).resolve()),
            "source": Path(file).read_text(), "hook": spec.hook, "mode": mode,
            "linking": plan.linking, "fused_style": pipeline.fused_style,
            "plan": plan.to_dict(),
            "nodes": [{"id": n.id, "index": n.index, "ports": list(n.ports)}
                      for n in plan.order],
            "interfaces": ifaces, "programs": programs, "maps": maps,
            "entry_prog_id": entry.id, "deployed_at": time.time(),
        }
        _write_manifest(sdir, manifest)
        return manifest
    except BaseException:
        for _t, att in reversed(attachments):
            try:
                att.detach()
            except NfpipeError:
                pass
        for path in pins:
            try:
                os.unlink(path)
            except OSError:
                pass
        _remove_state(sdir)
        raise
    finally:
        for _t, att in attachments:
            try:
                att.close()
            except NfpipeError:
                pass
        pipeline.close()


def _write_manifest(sdir: Path, manifest: dict, name: str = MANIFEST) -> None:
    """Pin the manifest as a frozen array map: 4-byte length, then the JSON."""
    from nfpipe.kernel import abi, bpffs
    from nfpipe.kernel import syscall as sc
    data = json.dumps(manifest, sort_keys=True).encode()
    value = len(data).to_bytes(4, "little") + data
    value += bytes(-len(value) % 8)
    with sc.map_create(abi.MapType.ARRAY, 4, len(value), 1, name="nfp_manifest") as fd:
        sc.map_update_elem(fd, bytes(4), value)
        sc.map_freeze(fd)
        bpffs.pin(fd, str(sdir / name))


def read_manifest(sdir: Path) -> dict | None:
    from nfpipe.kernel import bpffs
    from nfpipe.kernel import syscall as sc
    path = sdir / MANIFEST
    if not path.exists():
        return None
    with bpffs.open_pinned(str(path)) as fd:
        info = sc.map_info(fd)
        raw = sc.map_lookup_elem(fd, bytes(4), info.value_size)
    n = int.from_bytes(raw[:4], "little")
    return json.loads(raw[4:4 + n])


def _remove_state(sdir: Path) -> None:
    if sdir.exists():
        shutil.rmtree(sdir, ignore_errors=True)
    try:
        sdir.parent.rmdir()            # the state root, once no pipeline is left
    except OSError:
        pass


def _pipeline_dirs(root: str, name: str | None) -> list[Path]:
    base = Path(root)
    if not base.is_dir():
        return []
    dirs = sorted(d for d in base.iterdir() if d.is_dir())
    if name is not None:
        dirs = [d for d in dirs if d.name == name]
    return dirs


def status(name: str | None = None, *, root: str = STATE_ROOT) -> list[dict]:
    """Every deployed pipeline (or *name*), as found in bpffs and the kernel."""
    from nfpipe.attach.links import query
    out = []
    for d in _pipeline_dirs(root, name):
        m = read_manifest(d)
        if m is None:
            out.append({"pipeline": d.name, "state": "incomplete", "dir": str(d),
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
                    "nodes": [n["id"] for n in m["nodes"]], "deployed_at": m["deployed_at"]})
    if name is not None and not out:
        raise DeployError(f"no pipeline '{name}' is deployed (nothing in {root})")
    return out


def stats(name: str, *, root: str = STATE_ROOT) -> dict:
    """Per-node, per-outcome counters of a deployed pipeline, read from its pinned maps."""
    from nfpipe.load.maps import Map
    from nfpipe.load.pipeline import node_stats
    d = state_dir(name, root)
    m = read_manifest(d) if d.exists() else None
    if m is None:
        raise DeployError(f"no pipeline '{name}' is deployed (nothing in {d})")
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
    with _locked(name, root):
        return _repair(d)


def _repair(d: Path) -> list[str]:
    """Detach every link pinned in state directory *d*, then remove it."""
    from nfpipe.attach.links import Link
    m = read_manifest(d)
    done = []
    netns_of = {i.get("link"): i.get("netns") for i in (m or {}).get("interfaces", [])}
    links = d / "links"
    for path in sorted(links.iterdir()) if links.is_dir() else []:
        netns = netns_of.get(str(path))    # only names the interface; detach needs none
        try:
            with Link.from_pin(str(path), netns=netns) as link:
                link.detach()
            done.append(f"detached {path.name.replace('@', ':')}")
        except NfpipeError as exc:
            done.append(f"link {path.name}: {exc}")
    _remove_state(d)
    done.append(f"removed {d}")
    return done


def open_map(name: str, map_name: str, *, root: str = STATE_ROOT):
    """A deployed pipeline's map by its full name ("fw__hits", "nfp_stats"), as a Map."""
    from nfpipe.load.maps import Map
    d = state_dir(name, root)
    m = read_manifest(d) if d.exists() else None
    if m is None:
        raise DeployError(f"no pipeline '{name}' is deployed (nothing in {d})")
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
    for m in _manifests(root):
        if names and m["pipeline"] not in names:
            continue
        for node, row in stats(m["pipeline"], root=root).items():
            for outcome, c in row.items():
                labels = f'pipeline="{m["pipeline"]}",node="{node}",outcome="{outcome}"'
                samples.append(f"nfpipe_packets_total{{{labels}}} {c['packets']}")
                samples.append(f"nfpipe_bytes_total{{{labels}}} {c['bytes']}")
    return "\n".join(lines + sorted(samples)) + "\n"


def node_maps(name: str, node: str, *, root: str = STATE_ROOT):
    """The pinned maps of one node of a deployed pipeline, as a NodeMaps (caller closes)."""
    from nfpipe.catalog.base import NodeMaps
    from nfpipe.load.maps import Map
    d = state_dir(name, root)
    m = read_manifest(d) if d.exists() else None
    if m is None:
        raise DeployError(f"no pipeline '{name}' is deployed (nothing in {d})")
    nodes = {n["id"]: n for n in m["plan"]["nodes"]}
    if node not in nodes:
        raise DeployError(f"pipeline '{name}' has no node '{node}' (nodes: "
                          f"{', '.join(nodes)})")
    prefix = f"{node}__"
    maps = {k: Map.from_pin(p) for k, p in m["maps"].items() if k.startswith(prefix)}
    return m, nodes[node], NodeMaps(maps, node)


def set_filter_rules(name: str, node: str, config: dict, *, root: str = STATE_ROOT) -> dict:
    """Replace a deployed filter node's rules and policies while traffic flows.

    The new rule set is compiled first (a bad one changes nothing), checked to
    send packets only to ports the pipeline wired, written to the inactive
    generation and switched on with one word: each packet sees the old rules or
    the new, never a mix.  The manifest records the node's new config."""
    from nfpipe.catalog.filter import Filter
    _require_root()
    with _locked(name, root):
        m, nplan, maps = node_maps(name, node, root=root)
        try:
            if nplan["nf"] != "filter":
                raise DeployError(f"node '{node}' of '{name}' is a {nplan['nf']} node, not a "
                                  f"filter")
            new = Filter(config)
            unwired = [p for p in new.used_ports() if p not in nplan["ports"]]
            if unwired:
                raise DeployError(f"the new rules send packets to port(s) "
                                  f"{', '.join(unwired)} of '{node}', which the deployed "
                                  f"pipeline does not wire (wired: "
                                  f"{', '.join(nplan['ports'])}); redeploy with those edges")
            new.install(maps)
        finally:
            for mp in maps._maps.values():
                mp.close()
        m.setdefault("runtime_config", {})[node] = config
        _replace_manifest(state_dir(name, root), m)
        return {"pipeline": name, "node": node, "rules": len(new.rules)}


def _replace_manifest(sdir: Path, manifest: dict) -> None:
    """Swap the manifest pin for a new one (pinned aside, then renamed over it)."""
    tmp = sdir / "manifest_new"
    if tmp.exists():
        os.unlink(tmp)
    _write_manifest(sdir, manifest, name="manifest_new")
    os.rename(tmp, sdir / MANIFEST)

