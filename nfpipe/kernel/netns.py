"""Network namespaces for the current thread: ``in_netns`` and ``ifindex``.

``setns(2)`` on a network namespace moves only the calling *thread*; every
socket it creates afterwards (netlink, ethtool ioctl, AF_PACKET) and every
ifindex the kernel resolves for it (``BPF_LINK_CREATE`` on an ifindex,
``BPF_PROG_QUERY`` for tcx, ``prog_ifindex`` on load) belong to that namespace.
A socket keeps the namespace it was created in after the thread moves back.

Namespaces are named as ``ip netns`` names them (``/var/run/netns/<name>``) or
given as a path (``/proc/<pid>/ns/net``).  ``None`` means "stay where you are".
"""
from __future__ import annotations

import contextlib
import errno as _errno
import os
import socket
import threading
from collections.abc import Iterator

from nfpipe.errors import AttachError, KernelError, NoSuchInterface
from nfpipe.kernel import libc

NETNS_RUN_DIR = "/var/run/netns"

_local = threading.local()


def netns_path(name_or_path: str | os.PathLike) -> str:
    """The file of a namespace: a name under /var/run/netns, or a path as given."""
    text = os.fspath(name_or_path)
    if os.sep in text:
        return text
    return os.path.join(NETNS_RUN_DIR, text)


def current_netns() -> str | None:
    """The name of the namespace this thread is in, while inside ``in_netns``; else None."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def netns_inode(path: str = "/proc/thread-self/ns/net") -> int:
    """The inode that identifies a network namespace (this thread's by default)."""
    return os.stat(path).st_ino


@contextlib.contextmanager
def _entered(label: str, home: int) -> Iterator[None]:
    """The thread has just entered namespace *label*: note it for the block, and go back
    to *home* (an open fd of the namespace of origin) after it, also when it raises."""
    stack = _local.__dict__.setdefault("stack", [])
    stack.append(label)
    try:
        yield
    finally:
        stack.pop()
        libc.setns(home, "of origin")


@contextlib.contextmanager
def in_netns(name_or_path: str | os.PathLike | None) -> Iterator[None]:
    """Run the block with this thread inside the network namespace *name_or_path*.

    ``None`` runs the block where the thread already is.  The thread always
    returns to the namespace it came from, also when the block raises.  A name
    that does not exist is an ``AttachError``.
    """
    if name_or_path is None:
        yield
        return
    path = netns_path(name_or_path)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NoSuchInterface(f"network namespace {os.fspath(name_or_path)!r} does not exist "
                          f"(no {path})") from None
    except OSError as exc:
        raise KernelError("open", exc.errno or _errno.EIO,
                          f"cannot open network namespace {path}") from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(target)
        raise
    try:
        libc.setns(target, path)
        with _entered(os.fspath(name_or_path), home):
            yield
    finally:
        os.close(target)
        os.close(home)


@contextlib.contextmanager
def temporary_netns() -> Iterator[None]:
    """Run the block in a new, empty, unnamed network namespace of this thread.

    The namespace has no name and no file: the kernel frees it (with every
    interface made in it) once the block is over and its last socket is closed,
    even if this process dies inside the block.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.unshare()
        with _entered("<temporary>", home):
            yield
    finally:
        os.close(home)


def enter_netns(path: str) -> None:
    """Move the calling thread into the namespace at *path* for good: for a child
    between fork and exec (``preexec_fn``), which never returns."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(fd, path)
    finally:
        os.close(fd)


def ifindex(ifname: str, netns: str | os.PathLike | None = None) -> int:
    """The index of interface *ifname* in *netns* (None: this thread's namespace).

    An unknown name is an ``AttachError`` naming the interface and namespace.
    """
    if not ifname or len(ifname) >= 16 or "/" in ifname:
        raise AttachError(f"{ifname!r} is not a valid interface name", iface=ifname)
    with in_netns(netns):
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            where = f" in network namespace {os.fspath(netns)!r}" if netns is not None else ""
            raise NoSuchInterface(f"no interface {ifname!r}{where}", iface=ifname) from None


def ifname(index: int, netns: str | os.PathLike | None = None) -> str | None:
    """The name of interface *index* in *netns*, or None if there is none."""
    with in_netns(netns):
        try:
            return socket.if_indextoname(index)
        except OSError:
            return None
