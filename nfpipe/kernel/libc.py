"""Every libc call nfpipe makes outside what Python's ``os`` module offers: one handle,
one declaration per function, and every failure a ``KernelError`` naming the call.

``syscall`` (bpf() has no libc wrapper), ``setns`` and ``unshare`` (network
namespaces per thread), ``mount`` / ``umount2`` / ``statfs`` (bpffs), ``mmap`` /
``munmap`` (ring buffers: Python's ``mmap`` object cannot hand out the address of
a read-only mapping), ``sendmmsg`` (the live bench's packet-socket generator),
``prctl`` (``die_with_parent``, for the processes tests start).  Nothing else in
nfpipe loads libc.
"""
from __future__ import annotations

import ctypes
import os
import signal

from nfpipe.errors import KernelError

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int
_libc.unshare.argtypes = [ctypes.c_int]
_libc.unshare.restype = ctypes.c_int
_libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
_libc.statfs.restype = ctypes.c_int
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int
_MAP_FAILED = ctypes.c_void_p(-1).value


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_Iovec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_libc.sendmmsg.restype = ctypes.c_int


def _fail(op: str, detail: str, *, hint: str | None = None) -> KernelError:
    return KernelError(op, ctypes.get_errno(), detail, hint=hint)


def syscall(number: int, *args: int) -> tuple[int, int]:
    """syscall(2): (result, errno); the caller decides what an error means (bpf() retries
    EINTR and, for program loads, EAGAIN)."""
    ret = _libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    return ret, (ctypes.get_errno() if ret < 0 else 0)


def setns(fd: int, what: str, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace open at *fd* (*what* names it)."""
    if _libc.setns(fd, nstype) != 0:
        raise _fail("setns", f"cannot enter network namespace {what}")


def unshare(flags: int = CLONE_NEWNET) -> None:
    """Give the calling thread new namespaces of the kinds in *flags*."""
    if _libc.unshare(flags) != 0:
        raise _fail("unshare", "cannot create a network namespace")


def statfs_type(path: str | os.PathLike) -> int:
    """statfs(path).f_type: the magic number of the filesystem *path* lies on."""
    # struct statfs begins with f_type (a long on the 64-bit Linux ABIs nfpipe runs on);
    # the buffer is larger than the whole struct.
    buf = (ctypes.c_long * 32)()
    if _libc.statfs(os.fsencode(path), buf) != 0:
        raise _fail("statfs", os.fspath(path), hint="")
    return buf[0] & 0xFFFFFFFF


def mount(source: str, target: str | os.PathLike, fstype: str, flags: int = 0,
          data: str | None = None) -> None:
    opts = ctypes.c_char_p(data.encode()) if data is not None else None
    if _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags, opts) != 0:
        raise _fail("mount", f"cannot mount {fstype} at {os.fspath(target)}")


def umount2(target: str | os.PathLike, flags: int = 0) -> None:
    if _libc.umount2(os.fsencode(target), flags) != 0:
        raise _fail("umount", f"cannot unmount {os.fspath(target)}")


def mmap(length: int, prot: int, flags: int, fd: int, offset: int, what: str) -> int:
    """mmap(2): the address of the new mapping."""
    addr = _libc.mmap(None, length, prot, flags, fd, offset)
    if addr is None or addr == _MAP_FAILED:
        raise _fail("mmap", f"{what} (fd {fd}, offset {offset}, {length} bytes)", hint="")
    return addr


def munmap(addr: int, length: int) -> None:
    if addr and _libc.munmap(addr, length) != 0:
        raise _fail("munmap", f"{length} bytes at {addr:#x}", hint="")


def die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL): the calling process is killed when the thread
    that started it exits.  A ``preexec_fn`` for the servers and daemons tests start:
    they go with a test process killed by a signal that runs none of its cleanup."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise _fail("prctl", "cannot set PR_SET_PDEATHSIG", hint="")


class SameFrames:
    """*vlen* messages of one frame for sendmmsg(2): a connected (or bound packet)
    socket sends the same bytes *vlen* times in one call."""

    def __init__(self, frame: bytes, vlen: int):
        self._buf = ctypes.create_string_buffer(frame, len(frame))
        self._iov = _Iovec(ctypes.cast(self._buf, ctypes.c_void_p), len(frame))
        self._msgs = (_Mmsghdr * vlen)()
        for m in self._msgs:
            m.msg_hdr.msg_iov = ctypes.pointer(self._iov)
            m.msg_hdr.msg_iovlen = 1
        self.vlen = vlen

    def send(self, fd: int, n: int | None = None) -> int:
        """sendmmsg(2) of the first *n* (all) messages: how many went, or -errno."""
        got = _libc.sendmmsg(fd, ctypes.addressof(self._msgs), min(n or self.vlen, self.vlen), 0)
        return got if got >= 0 else -ctypes.get_errno()
