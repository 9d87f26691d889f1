"""The BPF filesystem: where maps, programs and links are pinned to outlive a process.

``ensure_mounted`` mounts bpffs like bpftool does when it is missing; ``pin``
creates the parent directories a pin needs (inside bpffs only); ``unpin`` and
``remove_empty_dirs`` undo both.
"""
from __future__ import annotations

import errno as _errno
import os

from nfpipe.errors import KernelError
from nfpipe.kernel import abi, libc
from nfpipe.kernel.syscall import Fd, FdLike, obj_get, obj_pin

DEFAULT_ROOT = "/sys/fs/bpf"

_NOT_BPFFS_HINT = (f"pin under {DEFAULT_ROOT} or mount a bpf filesystem there first "
                   f"(nfpipe.kernel.bpffs.ensure_mounted)")


def fs_type(path: str | os.PathLike) -> int:
    """statfs(path).f_type (the filesystem magic number); KernelError if statfs fails."""
    return libc.statfs_type(path)


def is_bpffs(path: str | os.PathLike) -> bool:
    """Whether *path* exists and lies on a bpf filesystem."""
    try:
        return fs_type(path) == abi.BPF_FS_MAGIC
    except OSError:
        return False


def ensure_mounted(path: str | os.PathLike = DEFAULT_ROOT) -> bool:
    """Mount bpffs at *path* (creating the directory) unless it already is one.

    Returns True if it mounted, False if bpffs was already there.
    """
    path = os.fspath(path)
    if is_bpffs(path):
        return False
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise KernelError("mount", exc.errno or _errno.EIO,
                          f"cannot create mount point {path}: {exc.strerror}") from None
    libc.mount("bpf", path, "bpf", 0, "mode=0700")
    return True


def unmount(path: str | os.PathLike) -> None:
    """Unmount the bpffs at *path* (refuses a path that is not a bpffs)."""
    path = os.fspath(path)
    if not is_bpffs(path):
        raise KernelError("umount", _errno.EINVAL, f"{path} is not a bpf filesystem", hint="")
    libc.umount2(path)


def _bpffs_ancestor(path: str) -> tuple[str, list[str]]:
    """The nearest existing ancestor directory of *path* and the missing dirs below it."""
    missing = []
    cur = os.path.dirname(path)
    while not os.path.lexists(cur):
        missing.append(cur)
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    return cur, missing[::-1]


def pin(fd: FdLike, path: str | os.PathLike) -> None:
    """Pin the object *fd* at *path*, creating missing parent directories (mode 0700).

    The parents must be on bpffs: a path elsewhere raises ``KernelError`` (EPERM,
    which is what the kernel would say) before anything is created.  A path under
    the default root mounts bpffs there first when it is not mounted yet.
    """
    path = os.path.abspath(os.fspath(path))
    dotted = [part for part in path[len(DEFAULT_ROOT):].split("/") if "." in part] \
        if path.startswith(DEFAULT_ROOT + "/") else []
    if dotted:
        raise KernelError("BPF_OBJ_PIN", _errno.EPERM,
                          f"cannot pin at {path}: bpffs reserves names containing '.' "
                          f"({dotted[0]!r}); use another name", hint="")
    if path.startswith(DEFAULT_ROOT + "/") and not is_bpffs(DEFAULT_ROOT):
        ensure_mounted(DEFAULT_ROOT)
    existing, missing = _bpffs_ancestor(path)
    if not os.path.isdir(existing) or not is_bpffs(existing):
        raise KernelError("BPF_OBJ_PIN", _errno.EPERM,
                          f"cannot pin at {path}: {existing} is not on a bpf filesystem",
                          hint=_NOT_BPFFS_HINT)
    created = []
    try:
        for d in missing:
            try:
                os.mkdir(d, 0o700)
                created.append(d)
            except FileExistsError:
                pass
            except OSError as exc:
                raise KernelError("mkdir", exc.errno or _errno.EIO,
                                  f"cannot create pin directory {d}: {exc.strerror}") from None
        obj_pin(fd, path)
    except BaseException:
        for d in reversed(created):
            try:
                os.rmdir(d)
            except OSError:
                pass
        raise


def open_pinned(path: str | os.PathLike, flags: int = 0) -> Fd:
    """An fd for the object pinned at *path* (flags: BPF_F_RDONLY / BPF_F_WRONLY)."""
    return obj_get(path, flags)


def unpin(path: str | os.PathLike, *, missing_ok: bool = False) -> bool:
    """Remove the pin at *path* (the object lives on while fds or links hold it).

    Refuses paths that are not on bpffs.  Returns False if nothing was pinned
    there and *missing_ok*.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        if missing_ok:
            return False
        raise KernelError("unpin", _errno.ENOENT, f"nothing is pinned at {path}", hint="")
    if not is_bpffs(path):
        raise KernelError("unpin", _errno.EPERM, f"{path} is not on a bpf filesystem",
                          hint="nfpipe only unpins objects in a bpffs")
    if os.path.isdir(path):
        raise KernelError("unpin", _errno.EISDIR,
                          f"{path} is a directory; use remove_empty_dirs", hint="")
    try:
        os.unlink(path)
    except OSError as exc:
        raise KernelError("unpin", exc.errno or _errno.EIO, f"cannot unpin {path}") from None
    return True


def remove_empty_dirs(path: str | os.PathLike, *, stop_at: str | os.PathLike | None = None
                      ) -> bool:
    """Remove the directory tree *path* if it holds only (empty) directories, then its
    parents while they are empty, up to but not including *stop_at* (default: the bpffs
    mount root).  Pins are never removed: a tree that holds one is left as it is.

    Returns True if *path* is gone.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        return not os.path.lexists(path)
    if not is_bpffs(path):
        raise KernelError("rmdir", _errno.EPERM, f"{path} is not on a bpf filesystem",
                          hint="nfpipe only removes directories in a bpffs")
    stop = os.path.abspath(os.fspath(stop_at)) if stop_at is not None else _mount_root(path)
    if path == stop:
        return False

    def prune(d: str) -> bool:
        empty = True
        with os.scandir(d) as it:
            entries = list(it)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                empty = prune(e.path) and empty
            else:
                empty = False
        if empty:
            try:
                os.rmdir(d)
            except OSError:
                return False
        return empty

    if not prune(path):
        return False
    parent = os.path.dirname(path)
    while parent != stop and parent.startswith(stop + os.sep) and is_bpffs(parent):
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)
    return True


def _mount_root(path: str) -> str:
    """The top directory of the bpffs that holds *path*."""
    cur = path
    dev = os.stat(cur).st_dev
    while True:
        parent = os.path.dirname(cur)
        if parent == cur or os.stat(parent).st_dev != dev:
            return cur
        cur = parent
