"""Namespace, veth, bridge, address and route plumbing (pyroute2), and run state.

Naming: every namespace a topology run makes is ``nfpt.<topology>.<run-id>.<host>``
(bridges get a namespace of their own, named like a host).  Topology, run and
host names cannot contain dots, so a name splits back into its parts, and all
namespaces of a run share the prefix ``nfpt.<topology>.<run-id>.``: ``down`` finds
them by that prefix even when the state file is gone.  Interfaces are created
directly inside their namespaces with their final names (a veth's peer is
placed into the other namespace by the same netlink request), so nothing is
ever created in the caller's namespace and interface names only need to be
unique per namespace.

State: ``/run/nfpipe/topo/<topology>.<run-id>.json`` is written *before* the
first namespace is created and lists every namespace the run will own, so a
crash at any point leaves enough behind for ``down`` to clean up.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator

from pyroute2 import IPRoute, netns as _pnetns
from pyroute2.netlink.exceptions import NetlinkError

from nfpipe.errors import KernelError

NS_PREFIX = "nfpt."
NETNS_DIR = _pnetns.NETNS_RUN_DIR
STATE_DIR = os.environ.get("NFPIPE_TOPO_STATE_DIR", "/run/nfpipe/topo")


def ns_name(topology: str, run_id: str, host: str) -> str:
    return f"{NS_PREFIX}{topology}.{run_id}.{host}"


def run_prefix(topology: str, run_id: str) -> str:
    return f"{NS_PREFIX}{topology}.{run_id}."


def split_ns_name(name: str) -> tuple[str, str, str] | None:
    if not name.startswith(NS_PREFIX):
        return None
    parts = name[len(NS_PREFIX):].split(".")
    return tuple(parts) if len(parts) == 3 else None


def ns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def list_namespaces(prefix: str = NS_PREFIX) -> list[str]:
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def ns_exists(name: str) -> bool:
    return os.path.exists(ns_path(name))


def netlink_error(op: str, exc: BaseException, detail: str = "") -> KernelError:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None) or errno.EIO
    msg = detail or str(exc)
    hint = None
    if code == errno.EEXIST:
        hint = "something with that name or address already exists"
    elif code == errno.ENETUNREACH:
        hint = "the gateway is not on a subnet of any interface of that host"
    return KernelError(op, code, msg, hint=hint)


def create_ns(name: str) -> None:
    try:
        _pnetns.create(name)
    except (OSError, NetlinkError) as exc:
        raise netlink_error(f"create network namespace {name}", exc) from None
    if not ns_exists(name):
        raise KernelError(f"create network namespace {name}", errno.EIO,
                          "pyroute2 reported success but no namespace file appeared")


def pids_in_ns(name: str) -> list[int]:
    """Processes whose network namespace is *name* (same nsfs inode)."""
    try:
        st = os.stat(ns_path(name))
    except OSError:
        return []
    key = (st.st_dev, st.st_ino)
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            s = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (s.st_dev, s.st_ino) == key:
            out.append(int(entry))
    return out


def kill_ns_processes(name: str, timeout: float = 2.0) -> list[int]:
    """SIGKILL every process living in the namespace (they were started in it by us)."""
    pids = pids_in_ns(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    left = pids
    while left and time.monotonic() < deadline:
        for pid in list(left):  # reap our own children so they do not linger as zombies
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        left = [p for p in left if os.path.exists(f"/proc/{p}") and not _is_zombie(p)]
        if left:
            time.sleep(0.02)
    return pids


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def remove_ns(name: str) -> bool:
    """Kill what runs in it and remove it; the veths inside go with it.  False if absent."""
    if not ns_exists(name):
        return False
    kill_ns_processes(name)
    try:
        _pnetns.remove(name)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise netlink_error(f"remove network namespace {name}", exc) from None
    return True


@contextlib.contextmanager
def iproute(name: str) -> Iterator[IPRoute]:
    """An IPRoute whose netlink socket lives in namespace *name*."""
    try:
        ipr = IPRoute(netns=name)
    except (OSError, NetlinkError) as exc:
        raise netlink_error(f"open netlink in namespace {name}", exc) from None
    try:
        yield ipr
    finally:
        ipr.close()


def link_index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def link_kind(ipr: IPRoute, index: int) -> str | None:
    links = ipr.get_links(index)
    return links[0].get(("linkinfo", "info_kind")) if links else None


# --- state files --------------------------------------------------------------------

def state_path(topology: str, run_id: str) -> str:
    return os.path.join(STATE_DIR, f"{topology}.{run_id}.json")


def write_state(state: dict) -> None:
    os.makedirs(STATE_DIR, mode=0o755, exist_ok=True)
    path = state_path(state["topology"], state["run_id"])
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def read_state(topology: str, run_id: str) -> dict | None:
    try:
        with open(state_path(topology, run_id)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def remove_state(topology: str, run_id: str) -> None:
    for p in (state_path(topology, run_id), state_path(topology, run_id)[:-5] + ".lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def list_states() -> list[dict]:
    out = []
    try:
        names = sorted(os.listdir(STATE_DIR))
    except FileNotFoundError:
        return out
    for n in names:
        if not n.endswith(".json"):
            continue
        try:
            with open(os.path.join(STATE_DIR, n)) as f:
                st = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(st, dict) and "topology" in st and "run_id" in st:
            out.append(st)
    return out


@contextlib.contextmanager
def run_lock(topology: str, run_id: str) -> Iterator[None]:
    """Serialise up/down of one run across processes (flock on a file next to the state)."""
    os.makedirs(STATE_DIR, mode=0o755, exist_ok=True)
    path = os.path.join(STATE_DIR, f"{topology}.{run_id}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def runs_present() -> dict[tuple[str, str], dict]:
    """Every run known by state file or by namespace name: (topology, run) -> info."""
    runs: dict[tuple[str, str], dict] = {}
    for st in list_states():
        runs[(st["topology"], st["run_id"])] = {"state": st, "namespaces": []}
    for n in list_namespaces():
        parts = split_ns_name(n)
        if parts is None:
            continue
        info = runs.setdefault((parts[0], parts[1]), {"state": None, "namespaces": []})
        info["namespaces"].append(n)
    return runs


def teardown(topology: str, run_id: str, extra: list[str] = ()) -> list[str]:
    """Remove every namespace of the run (state + prefix scan) and its state file."""
    with run_lock(topology, run_id):
        names = set(extra) | set(list_namespaces(run_prefix(topology, run_id)))
        st = read_state(topology, run_id)
        if st:
            names |= set(st.get("namespaces", {}).values())
        removed, errors = [], []
        for n in sorted(names):
            try:
                if remove_ns(n):
                    removed.append(n)
            except KernelError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        remove_state(topology, run_id)
    return removed
