"""A deployed pipeline's state on bpffs: layout, manifest, pins, and the per-pipeline lock.

Layout under ``/sys/fs/bpf/nfpipe/<pipeline>/``::

    manifest             what runs, as JSON in a frozen one-entry array map (bpffs
                         holds only pins); present = a complete deploy
    manifest_next        an update decided and loaded but not finished switching;
                         whoever holds the lock next finishes it (roll forward)
    links/<netns>@<if>   the bpf_link of each attachment
    r<N>/progs/<prog>    programs loaded by revision N of the pipeline
    r<N>/maps/<map>      maps created by revision N

Every program and map is pinned: the kernel empties a program array when its
last user-space reference goes away, and pinned maps keep their contents
readable and reusable by the next revision.  A revision pins only what it
creates; the manifest names the path of everything in use, and whatever else is
found under the directory is left over from an earlier revision (or a killed
update) and is removed.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from nfpipe.errors import NfpipeError

STATE_ROOT = "/sys/fs/bpf/nfpipe"
MANIFEST = "manifest"
MANIFEST_NEXT = "manifest_next"
LOCK_DIR = "/run/nfpipe/locks"
MANIFEST_VERSION = 2


class DeployError(NfpipeError):
    """A deploy was refused or failed; nothing it did is left behind."""


def pin_name(name: str) -> str:
    """A bpffs entry name for *name*: bpffs refuses names with '.' (and '/' splits paths)."""
    return name.replace(".", "_").replace("/", "_")


def state_dir(name: str, root: str = STATE_ROOT) -> Path:
    return Path(root) / name


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


@contextlib.contextmanager
def locked(name: str, root: str = STATE_ROOT):
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


# --- the manifest -------------------------------------------------------------------------

def write_manifest(sdir: Path, manifest: dict, name: str = MANIFEST) -> None:
    """Pin *manifest* as a frozen array map: 4-byte length, then the JSON."""
    from nfpipe.kernel import abi, bpffs
    from nfpipe.kernel import syscall as sc
    data = json.dumps(manifest, sort_keys=True).encode()
    value = len(data).to_bytes(4, "little") + data
    value += bytes(-len(value) % 8)
    with sc.map_create(abi.MapType.ARRAY, 4, len(value), 1, name="nfp_manifest") as fd:
        sc.map_update_elem(fd, bytes(4), value)
        sc.map_freeze(fd)
        bpffs.pin(fd, str(sdir / name))


def read_manifest(sdir: Path, name: str = MANIFEST) -> dict | None:
    from nfpipe.kernel import bpffs
    from nfpipe.kernel import syscall as sc
    path = sdir / name
    if not path.exists():
        return None
    with bpffs.open_pinned(str(path)) as fd:
        info = sc.map_info(fd)
        raw = sc.map_lookup_elem(fd, bytes(4), info.value_size)
    n = int.from_bytes(raw[:4], "little")
    return json.loads(raw[4:4 + n])


def replace_manifest(sdir: Path, manifest: dict, name: str = MANIFEST) -> None:
    """Swap the pin *name* for a new manifest (pinned aside, then renamed over it: a
    reader sees the old one or the new one)."""
    tmp = sdir / f"{name}_tmp"
    if tmp.exists():
        os.unlink(tmp)
    write_manifest(sdir, manifest, name=tmp.name)
    os.rename(tmp, sdir / name)


def manifests(root: str = STATE_ROOT) -> list[dict]:
    out = []
    for d in pipeline_dirs(root, None):
        try:
            m = read_manifest(d)
        except (NfpipeError, OSError, ValueError):
            continue
        if m is not None:
            out.append(m)
    return out


def pipeline_dirs(root: str, name: str | None) -> list[Path]:
    base = Path(root)
    if not base.is_dir():
        return []
    dirs = sorted(d for d in base.iterdir() if d.is_dir())
    if name is not None:
        dirs = [d for d in dirs if d.name == name]
    return dirs


# --- pins ---------------------------------------------------------------------------------

def revision_dir(sdir: Path, revision: int) -> Path:
    return sdir / f"r{revision}"


def referenced(manifest: dict) -> set[str]:
    """Every pin path *manifest* uses."""
    paths = set(manifest.get("maps", {}).values())
    paths.update(n["program"] for n in manifest.get("nodes", []) if n.get("program"))
    paths.update(i["link"] for i in manifest.get("interfaces", []) if i.get("link"))
    if manifest.get("entry"):
        paths.add(manifest["entry"]["program"])
    return paths


def stray_pins(sdir: Path, keep: list[dict]) -> list[Path]:
    """Pins under *sdir* (links excepted) that none of the manifests *keep* uses."""
    wanted = set().union(*(referenced(m) for m in keep)) if keep else set()
    out = []
    for path in sorted(sdir.rglob("*")):
        rel = path.relative_to(sdir)
        if path.is_dir() or rel.parts[0] == "links" or len(rel.parts) == 1:
            continue                  # manifests live at the top; links are detached, not unpinned
        if str(path) not in wanted:
            out.append(path)
    return out


def remove_pins(sdir: Path, paths: list[Path]) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass
    for d in sorted((p for p in sdir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            d.rmdir()                 # only empty ones go
        except OSError:
            pass


def prog_ids_pinned(root: str = STATE_ROOT) -> set[int]:
    """Ids of every program pinned under *root*: what nfpipe put on interfaces (also in
    the middle of an update whose manifest is not written yet)."""
    from nfpipe.kernel import bpffs
    from nfpipe.kernel import syscall as sc
    ids: set[int] = set()
    base = Path(root)
    if not base.is_dir():
        return ids
    for path in base.glob("*/r*/progs/*"):
        try:
            with bpffs.open_pinned(str(path)) as fd:
                ids.add(sc.prog_info(fd).id)
        except (NfpipeError, OSError):
            continue
    for m in manifests(root):
        ids.add(m.get("entry_prog_id"))
    return ids


def remove_state(sdir: Path) -> None:
    if sdir.exists():
        shutil.rmtree(sdir, ignore_errors=True)
    try:
        sdir.parent.rmdir()            # the state root, once no pipeline is left
    except OSError:
        pass
