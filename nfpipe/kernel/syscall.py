"""Thin wrappers around the bpf() syscall: one function per command.

Each wrapper fills the command's ``union bpf_attr`` member (``nfpipe.kernel.abi``),
calls ``bpf()`` and turns a failure into ``KernelError(op, errno, detail)`` with
the command's C name as ``op``.  Wrappers that create a file descriptor return
an ``Fd`` that owns it; every parameter that takes an fd accepts an ``Fd``, a
plain ``int`` or anything with ``fileno()``.

Nothing here interprets what the kernel returns beyond marshalling it into
Python values; formatting verifier logs, sizing per-CPU values and the like are
the callers' business.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import functools
import os
import platform
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from nfpipe.errors import KernelError
from nfpipe.kernel import abi, libc
from nfpipe.kernel.abi import Cmd

# --- file descriptors -------------------------------------------------------------------


class Fd:
    """Owns one file descriptor; closes it on ``close()``, on ``with`` exit, or when collected.

    ``fd`` is the number (-1 once closed); ``int(x)`` and ``fileno()`` refuse a
    closed Fd, so a number that may already belong to something else is never
    handed to the kernel.
    """

    __slots__ = ("_fd", "__weakref__")

    def __init__(self, fd: int):
        fd = int(fd)
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        self._fd = fd

    @property
    def fd(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("operation on a closed Fd")
        return self._fd

    __int__ = fileno

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def release(self) -> int:
        """Give up ownership: return the number and forget it (the caller closes it)."""
        fd = self.fileno()
        self._fd = -1
        return fd

    def dup(self) -> Fd:
        """A new Fd (close-on-exec) for the same kernel object."""
        return Fd(os.dup(self.fileno()))

    def __enter__(self) -> Fd:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._fd >= 0:
                self.close()
        except Exception:   # interpreter shutdown: os may already be gone
            pass

    def __repr__(self) -> str:
        return "<Fd closed>" if self._fd < 0 else f"<Fd {self._fd}>"


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


FdLike = Fd | int | _HasFileno


def _fd(obj: FdLike | None) -> int:
    """The number of an fd given as Fd, int, or object with fileno(); None means 0."""
    if obj is None:
        return 0
    if isinstance(obj, int):
        return obj
    if hasattr(obj, "fileno"):
        return obj.fileno()
    raise TypeError(f"expected a file descriptor (Fd, int or object with fileno()), "
                    f"not {type(obj).__name__}")


# --- the raw call -----------------------------------------------------------------------


@functools.cache
def _sys_bpf() -> int:
    machine = platform.machine()
    try:
        return abi.SYS_BPF_BY_MACHINE[machine]
    except KeyError:
        raise KernelError("bpf", _errno.ENOSYS,
                          f"nfpipe does not know the bpf() syscall number on {machine}",
                          hint="") from None


def _op(cmd: int) -> str:
    try:
        return "BPF_" + Cmd(cmd).name
    except ValueError:
        return f"bpf(cmd={cmd})"


def bpf(cmd: int, attr: ctypes.Structure | ctypes.Union, size: int | None = None, *,
        detail: str = "") -> int:
    """bpf(cmd, &attr, size): the syscall's non-negative result, or ``KernelError``."""
    if size is None:
        size = ctypes.sizeof(attr)
    again = 5
    while True:
        ret, err = libc.syscall(_sys_bpf(), int(cmd), ctypes.addressof(attr), size)
        if ret >= 0:
            return ret
        if err == _errno.EINTR:
            continue
        # the verifier gives up with EAGAIN when a signal is pending: try again a few times
        if err == _errno.EAGAIN and cmd == Cmd.PROG_LOAD and again > 0:
            again -= 1
            continue
        hint = None
        if err == _errno.EPERM and cmd in _MAP_ACCESS_CMDS and os.geteuid() == 0:
            hint = _MAP_ACCESS_HINT
        raise KernelError(_op(cmd), err, detail, hint=hint)


# EPERM from these, as root, means the map or this fd forbids the access, not a privilege.
_MAP_ACCESS_CMDS = frozenset({
    Cmd.MAP_LOOKUP_ELEM, Cmd.MAP_UPDATE_ELEM, Cmd.MAP_DELETE_ELEM, Cmd.MAP_GET_NEXT_KEY,
    Cmd.MAP_LOOKUP_AND_DELETE_ELEM, Cmd.MAP_FREEZE, Cmd.MAP_LOOKUP_BATCH,
    Cmd.MAP_LOOKUP_AND_DELETE_BATCH, Cmd.MAP_UPDATE_BATCH, Cmd.MAP_DELETE_BATCH})
_MAP_ACCESS_HINT = ("the map is frozen, or it or this fd is read-only/write-only "
                    "(BPF_F_RDONLY/BPF_F_WRONLY, BPF_F_RDONLY_PROG maps)")


def _new_fd(cmd: int, attr, detail: str = "") -> Fd:
    return Fd(bpf(cmd, attr, detail=detail))


class _Buf:
    """A ctypes copy of some bytes (or a zeroed buffer) whose address the kernel may use."""

    __slots__ = ("obj", "size")

    def __init__(self, data: bytes | bytearray | memoryview | None = None, size: int = 0):
        if data is not None:
            data = bytes(data)
            size = max(size, len(data))
        self.size = size
        self.obj = (ctypes.c_char * max(size, 1))()
        if data:
            ctypes.memmove(self.obj, data, len(data))

    @property
    def addr(self) -> int:
        return ctypes.addressof(self.obj) if self.size else 0

    def raw(self, n: int | None = None) -> bytes:
        return bytes(self.obj)[: self.size if n is None else n]


def _name16(name: str | bytes) -> bytes:
    raw = name.encode() if isinstance(name, str) else bytes(name)
    return raw[: abi.BPF_OBJ_NAME_LEN - 1]


# --- maps -------------------------------------------------------------------------------


def bpf_refusal() -> KernelError | None:
    """Why the kernel will not take a BPF object from this process (no CAP_BPF, a
    kernel without bpf(), a policy refusing it), or None when it will: a one-entry
    array map is created and closed."""
    try:
        map_create(abi.MapType.ARRAY, 4, 4, 1, name="nfp_probe").close()
    except KernelError as exc:
        return exc
    return None


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, *,
               flags: int = 0, name: str = "", inner_map_fd: FdLike = 0,
               numa_node: int | None = None, ifindex: int = 0, btf_fd: FdLike = 0,
               btf_key_type_id: int = 0, btf_value_type_id: int = 0,
               btf_vmlinux_value_type_id: int = 0, map_extra: int = 0) -> Fd:
    """BPF_MAP_CREATE.  *name* is cut to 15 bytes; *numa_node* sets BPF_F_NUMA_NODE."""
    attr = abi.MapCreateAttr(map_type=int(map_type), key_size=key_size, value_size=value_size,
                             max_entries=max_entries, map_flags=flags,
                             inner_map_fd=_fd(inner_map_fd), map_ifindex=ifindex,
                             btf_fd=_fd(btf_fd), btf_key_type_id=btf_key_type_id,
                             btf_value_type_id=btf_value_type_id,
                             btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
                             map_extra=map_extra)
    attr.map_name = _name16(name)
    if numa_node is not None:
        attr.map_flags |= abi.BPF_F_NUMA_NODE
        attr.numa_node = numa_node
    try:
        type_name = abi.MapType(map_type).name.lower()
    except ValueError:
        type_name = str(map_type)
    return _new_fd(Cmd.MAP_CREATE, attr, f"map '{name}' type {type_name}")


def _found(cmd: int, attr) -> bool:
    """Run *cmd*; False if the kernel said ENOENT (no such element / key / id)."""
    try:
        bpf(cmd, attr)
    except KernelError as exc:
        if exc.errno == _errno.ENOENT:
            return False
        raise
    return True


def _elem(fd: FdLike, key: bytes | None, flags: int = 0) -> tuple[abi.MapElemAttr, _Buf]:
    kbuf = _Buf(key)
    attr = abi.MapElemAttr(map_fd=_fd(fd), key=kbuf.addr, flags=flags)
    return attr, kbuf


def _lookup(cmd: int, fd: FdLike, key: bytes | None, value_size: int,
            flags: int) -> bytes | None:
    attr, _k = _elem(fd, key, flags)
    vbuf = _Buf(size=value_size)
    attr.value = vbuf.addr
    return vbuf.raw() if _found(cmd, attr) else None


def map_lookup_elem(fd: FdLike, key: bytes | None, value_size: int,
                    flags: int = 0) -> bytes | None:
    """BPF_MAP_LOOKUP_ELEM: the value (*value_size* bytes; per-CPU sizing is the caller's),
    or None if the key is absent."""
    return _lookup(Cmd.MAP_LOOKUP_ELEM, fd, key, value_size, flags)


def map_lookup_and_delete_elem(fd: FdLike, key: bytes | None, value_size: int,
                               flags: int = 0) -> bytes | None:
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM (key None for queue/stack maps); None if absent/empty."""
    return _lookup(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, fd, key, value_size, flags)


def map_update_elem(fd: FdLike, key: bytes | None, value: bytes, flags: int = 0) -> None:
    """BPF_MAP_UPDATE_ELEM with BPF_ANY / BPF_NOEXIST / BPF_EXIST (| BPF_F_LOCK)."""
    attr, _k = _elem(fd, key, flags)
    vbuf = _Buf(value)
    attr.value = vbuf.addr
    bpf(Cmd.MAP_UPDATE_ELEM, attr)


def map_delete_elem(fd: FdLike, key: bytes) -> bool:
    """BPF_MAP_DELETE_ELEM: True if deleted, False if the key was absent."""
    attr, _k = _elem(fd, key)
    return _found(Cmd.MAP_DELETE_ELEM, attr)


def map_get_next_key(fd: FdLike, key: bytes | None, key_size: int) -> bytes | None:
    """BPF_MAP_GET_NEXT_KEY: the key after *key* (the first one if *key* is None or absent);
    None after the last."""
    attr, _k = _elem(fd, key)
    nbuf = _Buf(size=key_size)
    attr.next_key = nbuf.addr
    return nbuf.raw() if _found(Cmd.MAP_GET_NEXT_KEY, attr) else None


def map_freeze(fd: FdLike) -> None:
    """BPF_MAP_FREEZE: no more writes from user space."""
    bpf(Cmd.MAP_FREEZE, abi.MapElemAttr(map_fd=_fd(fd)))


def _batch_cursor_size(key_size: int) -> int:
    # hash maps use a 4-byte bucket index, arrays and others the key itself
    return max(key_size, 8)


def _lookup_batch(cmd: int, fd, key_size, value_size, count, in_batch, flags):
    if count <= 0:
        raise ValueError("count must be positive")
    cur = _batch_cursor_size(key_size)
    inb = _Buf(in_batch, cur) if in_batch is not None else None
    outb = _Buf(size=cur)
    keys = _Buf(size=key_size * count)
    values = _Buf(size=value_size * count)
    attr = abi.MapBatchAttr(in_batch=inb.addr if inb else 0, out_batch=outb.addr,
                            keys=keys.addr, values=values.addr, count=count,
                            map_fd=_fd(fd), elem_flags=flags)
    done = False
    try:
        bpf(cmd, attr)
    except KernelError as exc:
        if exc.errno == _errno.ENOENT:
            done = True
        elif exc.errno == _errno.ENOSPC:
            raise KernelError(_op(cmd), exc.errno,
                              f"a hash bucket holds more than count={count} entries; "
                              f"retry with a larger count", hint="") from None
        else:
            raise
    n = attr.count
    kraw, vraw = keys.raw(), values.raw()
    out_keys = [kraw[i * key_size:(i + 1) * key_size] for i in range(n)]
    out_values = [vraw[i * value_size:(i + 1) * value_size] for i in range(n)]
    return out_keys, out_values, (None if done else outb.raw()), done


def map_lookup_batch(fd: FdLike, key_size: int, value_size: int, count: int,
                     in_batch: bytes | None = None, flags: int = 0
                     ) -> tuple[list[bytes], list[bytes], bytes | None, bool]:
    """BPF_MAP_LOOKUP_BATCH: up to *count* entries after the cursor *in_batch*.

    Returns ``(keys, values, out_batch, done)``: pass *out_batch* as the next
    call's *in_batch* until *done* (the kernel's ENOENT, which may come with the
    last entries).  *flags* is the batch's elem_flags (BPF_F_LOCK).  For per-CPU
    maps *value_size* is the per-CPU-rounded size times the possible CPUs.
    """
    return _lookup_batch(Cmd.MAP_LOOKUP_BATCH, fd, key_size, value_size, count, in_batch,
                         flags)


def map_lookup_and_delete_batch(fd: FdLike, key_size: int, value_size: int, count: int,
                                in_batch: bytes | None = None, flags: int = 0
                                ) -> tuple[list[bytes], list[bytes], bytes | None, bool]:
    """BPF_MAP_LOOKUP_AND_DELETE_BATCH; same contract as ``map_lookup_batch``."""
    return _lookup_batch(Cmd.MAP_LOOKUP_AND_DELETE_BATCH, fd, key_size, value_size, count,
                         in_batch, flags)


def _joined(items: Sequence[bytes] | bytes, what: str) -> tuple[bytes, int, int]:
    if isinstance(items, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be a sequence of bytes, one per entry")
    items = [bytes(i) for i in items]
    if not items:
        return b"", 0, 0
    size = len(items[0])
    if any(len(i) != size for i in items):
        raise ValueError(f"all {what} must have the same length")
    return b"".join(items), size, len(items)


def map_update_batch(fd: FdLike, keys: Sequence[bytes], values: Sequence[bytes],
                     flags: int = 0) -> int:
    """BPF_MAP_UPDATE_BATCH: write all pairs; *flags* is elem_flags (BPF_ANY/NOEXIST/EXIST/
    F_LOCK).  Returns the count; on failure the error says how many were written."""
    kraw, _ks, n = _joined(keys, "keys")
    vraw, _vs, nv = _joined(values, "values")
    if n != nv:
        raise ValueError(f"{n} keys but {nv} values")
    return map_update_batch_packed(fd, kraw, vraw, n, flags)


def map_update_batch_packed(fd: FdLike, keys: bytes, values: bytes | memoryview, count: int,
                            flags: int = 0) -> int:
    """``map_update_batch`` of *count* keys and values already laid end to end (what a
    caller writing a large table packs in one ``struct.pack``)."""
    if count == 0:
        return 0
    if len(keys) % count or len(values) % count:
        raise ValueError(f"{len(keys)} bytes of keys and {len(values)} of values do not "
                         f"divide into {count} entries")
    n = count
    kb, vb = _Buf(bytes(keys)), _Buf(bytes(values))
    attr = abi.MapBatchAttr(keys=kb.addr, values=vb.addr, count=n, map_fd=_fd(fd),
                            elem_flags=flags)
    try:
        bpf(Cmd.MAP_UPDATE_BATCH, attr)
    except KernelError as exc:
        _batch_progress(exc, attr.count, n, "written")
    return attr.count


def map_delete_batch(fd: FdLike, keys: Sequence[bytes], flags: int = 0) -> int:
    """BPF_MAP_DELETE_BATCH: delete all *keys*; returns the count deleted."""
    kraw, _ks, n = _joined(keys, "keys")
    if n == 0:
        return 0
    kb = _Buf(kraw)
    attr = abi.MapBatchAttr(keys=kb.addr, count=n, map_fd=_fd(fd), elem_flags=flags)
    try:
        bpf(Cmd.MAP_DELETE_BATCH, attr)
    except KernelError as exc:
        _batch_progress(exc, attr.count, n, "deleted")
    return attr.count


def _batch_progress(exc: KernelError, done: int, total: int, verb: str):
    """Re-raise a batch failure saying how far it got (the kernel reports that in count;
    it leaves count alone when it refuses the whole batch, so count == total says nothing)."""
    if done < total:
        raise KernelError(exc.op, exc.errno, f"{done} of {total} entries {verb}") from None
    raise exc


# --- program and BTF loading ------------------------------------------------------------

LOG_CAP = 256 << 20           # largest verifier log buffer nfpipe allocates
LOG_DEFAULT_SIZE = 1 << 20    # first log buffer when a log is wanted
_LOG_MIN = 128                # the kernel refuses smaller buffers


class ProgLoadError(KernelError):
    """BPF_PROG_LOAD failed; ``log`` is the verifier log (complete unless ``log_truncated``)."""

    def __init__(self, op: str, err: int, detail: str = "", *, log: str = "",
                 log_truncated: bool = False, name: str = "", hint: str | None = None):
        super().__init__(op, err, detail, hint=hint)
        self.log = log
        self.log_truncated = log_truncated
        self.name = name


class BtfLoadError(KernelError):
    """BPF_BTF_LOAD failed; ``log`` is the kernel's BTF verifier log."""

    def __init__(self, op: str, err: int, detail: str = "", *, log: str = "",
                 log_truncated: bool = False, hint: str | None = None):
        super().__init__(op, err, detail, hint=hint)
        self.log = log
        self.log_truncated = log_truncated


# What a verifier log says besides why: the statistics it appends, state-pruning and
# backtracking chatter.
_LOG_NOISE = re.compile(r"^(processed \d+ insns|verification time|stack depth|"
                        r"max_states_per_insn|peak_states|mark_read|func#\d+ @\d+|"
                        r"last_idx|regs=|parent didn't)")


def log_noise(line: str) -> bool:
    """Whether a verifier log line is statistics or chatter rather than a reason."""
    return bool(_LOG_NOISE.match(line.strip()))


def log_summary(log: str, width: int = 200) -> str:
    """The last line of a verifier log that says something."""
    for line in reversed(log.splitlines()):
        line = line.strip()
        if line and not log_noise(line):
            return line[:width]
    return ""


def _load_with_log(cmd: int, attr, set_log, get_true_size, log_level: int, log_size: int,
                   error_cls, detail: str, **error_kw) -> tuple[Fd, str]:
    """Run a loading command under the log policy shared by programs and BTF.

    log_level 0: one attempt without a log; if it fails, one retry with level 1 and a
    LOG_DEFAULT_SIZE buffer to learn why (the error keeps the log's end).  A log asked
    for (log_level > 0) is kept whole: its buffer grows on ENOSPC (to the size the
    kernel says it needs, when it says) up to LOG_CAP.
    """
    first_err = None
    if log_level == 0:
        set_log(attr, 0, None)
        try:
            return Fd(bpf(cmd, attr, detail=detail)), ""
        except KernelError as exc:
            first_err = exc.errno
        level = 1
    else:
        level = log_level
    size = min(max(log_size or LOG_DEFAULT_SIZE, _LOG_MIN), LOG_CAP)
    while True:
        buf = _Buf(size=size)
        set_log(attr, level, buf)
        try:
            fd = Fd(bpf(cmd, attr, detail=detail))
            return fd, _decode_log(buf)
        except KernelError as exc:
            err = exc.errno
        log = _decode_log(buf)
        true_size = get_true_size(attr)
        if err == _errno.ENOSPC and size < LOG_CAP and first_err is None:
            size = min(LOG_CAP, true_size if true_size > size else size * 4)
            continue
        # Learning why a load failed (first_err), the log's tail is enough: the kernel
        # keeps the end of a log that overflows its buffer, and each retry would verify
        # the program again (seconds, for one that hit the instruction limit).
        truncated = err == _errno.ENOSPC
        if truncated and first_err is not None and first_err != _errno.ENOSPC:
            err = first_err        # the log was cut short: report the real error
        text = detail
        summary = log_summary(log)
        if summary:
            text += f": {summary}"
        raise error_cls(_op(cmd), err, text, log=log, log_truncated=truncated, **error_kw)


def _decode_log(buf: _Buf) -> str:
    raw = bytes(buf.obj)
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _set_prog_log(attr, level, buf):
    attr.log_level = level
    attr.log_size = buf.size if buf else 0
    attr.log_buf = buf.addr if buf else 0
    attr.log_true_size = 0


def prog_load(prog_type: int, insns: bytes, license: str, *, name: str = "",
              expected_attach_type: int = 0, prog_flags: int = 0, kern_version: int = 0,
              prog_ifindex: int = 0, btf_fd: FdLike = 0, func_info: bytes = b"",
              func_info_rec_size: int = 0, line_info: bytes = b"",
              line_info_rec_size: int = 0, attach_btf_id: int = 0,
              attach_prog_fd: FdLike = 0, attach_btf_obj_fd: FdLike = 0,
              fd_array: Sequence[FdLike] | None = None, log_level: int = 0,
              log_size: int = 0) -> tuple[Fd, str]:
    """BPF_PROG_LOAD: returns ``(fd, verifier log)``; raises ``ProgLoadError`` with ``.log``.

    *insns* is the raw instruction bytes (8 per instruction).  With
    ``log_level=0`` the log is only fetched when loading fails (then at level 1).
    """
    insns = bytes(insns)
    if not insns or len(insns) % 8:
        raise ValueError(f"insns must be a non-empty multiple of 8 bytes, not {len(insns)}")
    ibuf = _Buf(insns)
    lic = ctypes.create_string_buffer(license.encode())
    attr = abi.ProgLoadAttr(prog_type=int(prog_type), insn_cnt=len(insns) // 8,
                            insns=ibuf.addr, license=ctypes.addressof(lic),
                            kern_version=kern_version, prog_flags=prog_flags,
                            prog_ifindex=prog_ifindex,
                            expected_attach_type=int(expected_attach_type),
                            prog_btf_fd=_fd(btf_fd), attach_btf_id=attach_btf_id)
    attr.prog_name = _name16(name)
    if attach_prog_fd and attach_btf_obj_fd:
        raise ValueError("attach_prog_fd and attach_btf_obj_fd share one field: give one")
    attr.attach_prog_fd = _fd(attach_prog_fd) or _fd(attach_btf_obj_fd)
    fibuf = libuf = fdbuf = None
    if func_info:
        rec = func_info_rec_size or ctypes.sizeof(abi.BpfFuncInfo)
        fibuf = _Buf(func_info)
        attr.func_info, attr.func_info_rec_size = fibuf.addr, rec
        attr.func_info_cnt = len(func_info) // rec
    if line_info:
        rec = line_info_rec_size or ctypes.sizeof(abi.BpfLineInfo)
        libuf = _Buf(line_info)
        attr.line_info, attr.line_info_rec_size = libuf.addr, rec
        attr.line_info_cnt = len(line_info) // rec
    if fd_array:
        fdbuf = (ctypes.c_int32 * len(fd_array))(*[_fd(f) for f in fd_array])
        attr.fd_array = ctypes.addressof(fdbuf)
    try:
        type_name = abi.ProgType(prog_type).name.lower()
    except ValueError:
        type_name = str(prog_type)
    detail = f"program '{name}' ({type_name}, {len(insns) // 8} insns)"
    keepalive = (ibuf, lic, fibuf, libuf, fdbuf)   # the kernel reads these during the call
    result = _load_with_log(Cmd.PROG_LOAD, attr, _set_prog_log, lambda a: a.log_true_size,
                            log_level, log_size, ProgLoadError, detail, name=name)
    del keepalive
    return result


def _set_btf_log(attr, level, buf):
    attr.btf_log_level = level
    attr.btf_log_size = buf.size if buf else 0
    attr.btf_log_buf = buf.addr if buf else 0
    attr.btf_log_true_size = 0


def btf_load(data: bytes, *, log_level: int = 0, log_size: int = 0) -> Fd:
    """BPF_BTF_LOAD of a raw BTF blob; raises ``BtfLoadError`` with the kernel's log."""
    dbuf = _Buf(data)
    attr = abi.BtfLoadAttr(btf=dbuf.addr, btf_size=len(data))
    fd, _log = _load_with_log(Cmd.BTF_LOAD, attr, _set_btf_log,
                              lambda a: a.btf_log_true_size, log_level, log_size,
                              BtfLoadError, f"BTF blob of {len(data)} bytes")
    del dbuf   # kept alive until here: the kernel reads it during the call
    return fd


# --- pinning ----------------------------------------------------------------------------


def obj_pin(fd: FdLike, path: str | os.PathLike) -> None:
    """BPF_OBJ_PIN: pin the object at *path* (which must be on a bpf filesystem)."""
    p = ctypes.create_string_buffer(os.fsencode(path))
    attr = abi.ObjAttr(pathname=ctypes.addressof(p), bpf_fd=_fd(fd))
    bpf(Cmd.OBJ_PIN, attr, detail=f"pin at {os.fspath(path)}")


def obj_get(path: str | os.PathLike, flags: int = 0) -> Fd:
    """BPF_OBJ_GET: open the object pinned at *path* (flags: BPF_F_RDONLY / BPF_F_WRONLY)."""
    p = ctypes.create_string_buffer(os.fsencode(path))
    attr = abi.ObjAttr(pathname=ctypes.addressof(p), file_flags=flags)
    return _new_fd(Cmd.OBJ_GET, attr, f"open pin {os.fspath(path)}")


# --- object info ------------------------------------------------------------------------

_I = TypeVar("_I", abi.BpfProgInfo, abi.BpfMapInfo, abi.BpfBtfInfo, abi.BpfLinkInfo)


def obj_get_info_by_fd(fd: FdLike, info_type: type[_I] | _I) -> _I:
    """BPF_OBJ_GET_INFO_BY_FD into a new *info_type* (or the given, pre-filled instance)."""
    info = info_type() if isinstance(info_type, type) else info_type
    attr = abi.InfoAttr(bpf_fd=_fd(fd), info_len=ctypes.sizeof(info),
                        info=ctypes.addressof(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr, detail=type(info).__name__)
    return info


def prog_info(fd: FdLike) -> abi.BpfProgInfo:
    """Info of a program (``.name_str``, ``.type``, ``.id``, ``.tag_hex``, ...)."""
    return obj_get_info_by_fd(fd, abi.BpfProgInfo)


def map_info(fd: FdLike) -> abi.BpfMapInfo:
    return obj_get_info_by_fd(fd, abi.BpfMapInfo)


def btf_info(fd: FdLike) -> abi.BpfBtfInfo:
    return obj_get_info_by_fd(fd, abi.BpfBtfInfo)


def link_info(fd: FdLike) -> abi.BpfLinkInfo:
    """Info of a link: ``.type``/``.id``/``.prog_id`` and the member of its type
    (``.xdp.ifindex``, ``.tcx.ifindex``/``.tcx.attach_type``, ``.netns``...)."""
    return obj_get_info_by_fd(fd, abi.BpfLinkInfo)


def fdinfo(fd: FdLike) -> dict[str, str]:
    """What the kernel reports of a BPF fd in ``/proc/self/fdinfo``: ``map_type``,
    ``max_entries``, ``memlock`` (bytes the map's memory is charged: what the kernel
    itself counts), ``map_id`` / ``prog_id`` / ``link_id``, ... as text."""
    out = {}
    with open(f"/proc/self/fdinfo/{_fd(fd)}") as f:
        for line in f:
            key, sep, val = line.partition(":")
            if sep:
                out[key.strip()] = val.strip()
    return out


def prog_map_ids(fd: FdLike) -> list[int]:
    """The ids of the maps a program uses (a second info call with a buffer)."""
    n = prog_info(fd).nr_map_ids
    while True:
        ids = (ctypes.c_uint32 * max(n, 1))()
        info = abi.BpfProgInfo(nr_map_ids=n, map_ids=ctypes.addressof(ids))
        obj_get_info_by_fd(fd, info)
        if info.nr_map_ids <= n:
            return list(ids[:info.nr_map_ids])
        n = info.nr_map_ids       # maps were bound in between


def prog_xlated_insns(fd: FdLike) -> bytes:
    """The program as the kernel holds it after verification (xlated instructions)."""
    n = prog_info(fd).xlated_prog_len
    buf = _Buf(size=n)
    info = abi.BpfProgInfo(xlated_prog_len=n, xlated_prog_insns=buf.addr)
    obj_get_info_by_fd(fd, info)
    return buf.raw(min(n, info.xlated_prog_len))


def btf_data(fd: FdLike) -> bytes:
    """The raw BTF blob of a loaded BTF object (what ``btf_load`` took, or the kernel's)."""
    size = btf_info(fd).btf_size
    while True:
        buf = _Buf(size=size)
        info = abi.BpfBtfInfo(btf=buf.addr, btf_size=size)
        obj_get_info_by_fd(fd, info)
        if info.btf_size <= size:
            return buf.raw(info.btf_size)
        size = info.btf_size


def btf_name(fd: FdLike) -> str:
    """The name of a kernel BTF object ("vmlinux", a module's name); "" for user BTF."""
    buf = _Buf(size=256)
    info = abi.BpfBtfInfo(name=buf.addr, name_len=256)
    obj_get_info_by_fd(fd, info)
    return abi.cstr(buf.raw())


# --- ids --------------------------------------------------------------------------------


def _next_id(cmd: int, start_id: int) -> int | None:
    attr = abi.GetIdAttr(start_id=start_id)
    return attr.next_id if _found(cmd, attr) else None


def prog_get_next_id(start_id: int = 0) -> int | None:
    """BPF_PROG_GET_NEXT_ID: the smallest program id above *start_id*, None if none."""
    return _next_id(Cmd.PROG_GET_NEXT_ID, start_id)


def map_get_next_id(start_id: int = 0) -> int | None:
    return _next_id(Cmd.MAP_GET_NEXT_ID, start_id)


def link_get_next_id(start_id: int = 0) -> int | None:
    return _next_id(Cmd.LINK_GET_NEXT_ID, start_id)


def btf_get_next_id(start_id: int = 0) -> int | None:
    return _next_id(Cmd.BTF_GET_NEXT_ID, start_id)


def _iter_ids(cmd: int) -> Iterator[int]:
    cur = 0
    while (nxt := _next_id(cmd, cur)) is not None:
        yield nxt
        cur = nxt


def iter_prog_ids() -> Iterator[int]:
    return _iter_ids(Cmd.PROG_GET_NEXT_ID)


def iter_map_ids() -> Iterator[int]:
    return _iter_ids(Cmd.MAP_GET_NEXT_ID)


def iter_link_ids() -> Iterator[int]:
    return _iter_ids(Cmd.LINK_GET_NEXT_ID)


def iter_btf_ids() -> Iterator[int]:
    return _iter_ids(Cmd.BTF_GET_NEXT_ID)


def _fd_by_id(cmd: int, obj_id: int, flags: int = 0) -> Fd:
    attr = abi.GetIdAttr(start_id=obj_id, open_flags=flags)
    return _new_fd(cmd, attr, f"id {obj_id}")


def prog_get_fd_by_id(prog_id: int) -> Fd:
    """BPF_PROG_GET_FD_BY_ID (ENOENT: no such program)."""
    return _fd_by_id(Cmd.PROG_GET_FD_BY_ID, prog_id)


def map_get_fd_by_id(map_id: int, flags: int = 0) -> Fd:
    """BPF_MAP_GET_FD_BY_ID; *flags* BPF_F_RDONLY / BPF_F_WRONLY."""
    return _fd_by_id(Cmd.MAP_GET_FD_BY_ID, map_id, flags)


def link_get_fd_by_id(link_id: int) -> Fd:
    return _fd_by_id(Cmd.LINK_GET_FD_BY_ID, link_id)


def btf_get_fd_by_id(btf_id: int) -> Fd:
    return _fd_by_id(Cmd.BTF_GET_FD_BY_ID, btf_id)


# --- test run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN returned: program return value, output packet and context,
    and the average duration of one run in nanoseconds."""

    __test__ = False  # not a pytest test class

    retval: int                 # the __u32 the kernel reports
    data: bytes
    ctx: bytes | None
    duration_ns: int

    @property
    def signed_retval(self) -> int:
        """The return value as the program's ``int`` (TC_ACT_UNSPEC, TCX_NEXT: -1)."""
        return ctypes.c_int32(self.retval).value


TEST_RUN_HEADROOM = 4096   # default room for a program that grows the packet


def prog_test_run(fd: FdLike, data: bytes = b"", *, data_out_size: int | None = None,
                  ctx: bytes | None = None, ctx_out_size: int = 0, repeat: int = 1,
                  flags: int = 0, cpu: int = 0, batch_size: int = 0) -> TestRunResult:
    """BPF_PROG_TEST_RUN.

    The output packet buffer is ``len(data) + 4096`` bytes unless *data_out_size*
    says otherwise (0: no output packet); the output context buffer is
    *ctx_out_size* bytes, or ``len(ctx)`` when a *ctx* is given and the size is 0.
    With BPF_F_TEST_XDP_LIVE_FRAMES the kernel takes no output buffers.
    """
    live = bool(flags & abi.BPF_F_TEST_XDP_LIVE_FRAMES)
    din = _Buf(data) if data else None
    if live:
        out_size, cout_size = 0, 0
    else:
        out_size = (len(data) + TEST_RUN_HEADROOM if data else 0) \
            if data_out_size is None else data_out_size
        cout_size = ctx_out_size or (len(ctx) if ctx is not None else 0)
    dout = _Buf(size=out_size) if out_size else None
    cin = _Buf(ctx) if ctx else None
    cout = _Buf(size=cout_size) if cout_size else None
    attr = abi.TestRunAttr(prog_fd=_fd(fd), data_size_in=len(data),
                           data_in=din.addr if din else 0,
                           data_size_out=out_size, data_out=dout.addr if dout else 0,
                           repeat=repeat, ctx_size_in=len(ctx) if ctx else 0,
                           ctx_in=cin.addr if cin else 0, ctx_size_out=cout_size,
                           ctx_out=cout.addr if cout else 0, flags=flags, cpu=cpu,
                           batch_size=batch_size)
    try:
        bpf(Cmd.PROG_TEST_RUN, attr)
    except KernelError as exc:
        if exc.errno == _errno.ENOSPC:
            if dout is not None and attr.data_size_out > out_size:
                what = (f"the output packet ({attr.data_size_out} bytes) did not fit the "
                        f"{out_size}-byte buffer; pass a larger data_out_size")
            elif cout is not None and attr.ctx_size_out > cout_size:
                what = (f"the output context ({attr.ctx_size_out} bytes) did not fit the "
                        f"{cout_size}-byte buffer; pass a larger ctx_out_size")
            else:
                what = "the output did not fit its buffer"
            raise KernelError(exc.op, exc.errno, what, hint="") from None
        if live and exc.errno == _errno.EPERM:
            raise KernelError(exc.op, exc.errno, "BPF_F_TEST_XDP_LIVE_FRAMES refused",
                              hint="this kernel runs test runs but does not let them "
                                   "send live frames (some sandboxed kernels forbid "
                                   "it); 'nfpipe probe' shows it as xdp_live_frames") \
                from None
        raise
    out = dout.raw(attr.data_size_out) if dout else b""
    ctx_out = cout.raw(attr.ctx_size_out) if cout else None
    # retval as the kernel reports it (a __u32, as bpftool prints it: TC_ACT_UNSPEC is
    # 4294967295); .signed_retval reads it as the program's int
    return TestRunResult(retval=attr.retval, data=out, ctx=ctx_out, duration_ns=attr.duration)


# --- attach, query, links ---------------------------------------------------------------


def prog_attach(prog_fd: FdLike, target: FdLike, attach_type: int, *, flags: int = 0,
                replace_bpf_fd: FdLike = 0, relative_fd: FdLike = 0, relative_id: int = 0,
                expected_revision: int = 0) -> None:
    """BPF_PROG_ATTACH (legacy, non-link attach).  *target* is a cgroup/netns/map fd, or an
    ifindex for tcx/netkit; *flags* BPF_F_ALLOW_MULTI, BPF_F_REPLACE, BPF_F_BEFORE/AFTER..."""
    if relative_fd and relative_id:
        raise ValueError("relative_fd and relative_id share one field: give one")
    attr = abi.ProgAttachAttr(attach_bpf_fd=_fd(prog_fd), attach_type=int(attach_type),
                              attach_flags=flags, replace_bpf_fd=_fd(replace_bpf_fd),
                              expected_revision=expected_revision)
    attr.target_fd = _fd(target)
    attr.relative_fd = _fd(relative_fd) or relative_id
    bpf(Cmd.PROG_ATTACH, attr, detail=_attach_detail(attach_type, target))


def prog_detach(prog_fd: FdLike | None, target: FdLike, attach_type: int, *, flags: int = 0,
                relative_fd: FdLike = 0, relative_id: int = 0,
                expected_revision: int = 0) -> None:
    """BPF_PROG_DETACH of *prog_fd* (None: whatever single program is attached)."""
    attr = abi.ProgAttachAttr(attach_bpf_fd=_fd(prog_fd), attach_type=int(attach_type),
                              attach_flags=flags, expected_revision=expected_revision)
    attr.target_fd = _fd(target)
    attr.relative_fd = _fd(relative_fd) or relative_id
    bpf(Cmd.PROG_DETACH, attr, detail=_attach_detail(attach_type, target))


def _attach_detail(attach_type: int, target) -> str:
    try:
        name = abi.AttachType(attach_type).name.lower()
    except ValueError:
        name = str(attach_type)
    return f"attach type {name}, target {_fd(target)}"


@dataclass(frozen=True)
class ProgQueryResult:
    """BPF_PROG_QUERY: attached programs in order, their attach flags, the links holding
    them (0 where a program is attached without a link) and the hook's revision."""

    attach_flags: int
    prog_ids: list[int]
    prog_attach_flags: list[int]
    link_ids: list[int]
    link_attach_flags: list[int]
    revision: int


def prog_query(target: FdLike, attach_type: int, flags: int = 0) -> ProgQueryResult:
    """BPF_PROG_QUERY on a cgroup/netns fd or, for tcx/netkit, an ifindex."""
    detail = _attach_detail(attach_type, target)
    count = 0
    while True:
        n = max(count, 1)
        ids, pflags = (ctypes.c_uint32 * n)(), (ctypes.c_uint32 * n)()
        lids, lflags = (ctypes.c_uint32 * n)(), (ctypes.c_uint32 * n)()
        attr = abi.ProgQueryAttr(attach_type=int(attach_type), query_flags=flags)
        attr.target_fd = _fd(target)
        if count:
            attr.prog_ids = ctypes.addressof(ids)
            attr.prog_cnt = count
            if not flags & abi.BPF_F_QUERY_EFFECTIVE:
                attr.prog_attach_flags = ctypes.addressof(pflags)
            attr.link_ids = ctypes.addressof(lids)
            attr.link_attach_flags = ctypes.addressof(lflags)
        try:
            bpf(Cmd.PROG_QUERY, attr, detail=detail)
        except KernelError as exc:
            if exc.errno == _errno.ENOSPC:      # more programs appeared since the count
                count = max(attr.prog_cnt, count * 2)
                continue
            raise
        if not count and attr.prog_cnt:
            count = attr.prog_cnt
            continue
        got = min(attr.prog_cnt, count)
        return ProgQueryResult(attach_flags=attr.attach_flags, prog_ids=list(ids[:got]),
                               prog_attach_flags=list(pflags[:got]),
                               link_ids=list(lids[:got]), link_attach_flags=list(lflags[:got]),
                               revision=attr.revision)


def link_create(prog_fd: FdLike, target: FdLike, attach_type: int, *, flags: int = 0,
                relative_fd: FdLike = 0, relative_id: int = 0, expected_revision: int = 0,
                target_btf_id: int = 0) -> Fd:
    """BPF_LINK_CREATE.  *target* is an ifindex (XDP, tcx, netkit) or a cgroup/netns fd;
    for XDP *flags* are XDP_FLAGS_*, for tcx/netkit BPF_F_BEFORE/AFTER/ID/LINK with
    *relative_fd*/*relative_id* and *expected_revision*."""
    if relative_fd and relative_id:
        raise ValueError("relative_fd and relative_id share one field: give one")
    attr = abi.LinkCreateAttr(attach_type=int(attach_type), flags=flags)
    attr.prog_fd = _fd(prog_fd)
    attr.target_fd = _fd(target)
    if target_btf_id:
        attr.target_btf_id = target_btf_id
    elif relative_fd or relative_id or expected_revision:
        attr.tcx.relative_fd = _fd(relative_fd) or relative_id
        attr.tcx.expected_revision = expected_revision
    return _new_fd(Cmd.LINK_CREATE, attr, _attach_detail(attach_type, target))


def link_update(link_fd: FdLike, new_prog_fd: FdLike, *, flags: int = 0,
                old_prog_fd: FdLike = 0) -> None:
    """BPF_LINK_UPDATE: swap the link's program; with *old_prog_fd* only if that is the one
    attached (BPF_F_REPLACE is set for you; EPERM if it is not)."""
    attr = abi.LinkUpdateAttr(link_fd=_fd(link_fd), flags=flags)
    attr.new_prog_fd = _fd(new_prog_fd)
    if old_prog_fd:
        attr.old_prog_fd = _fd(old_prog_fd)
        attr.flags |= abi.BPF_F_REPLACE
    bpf(Cmd.LINK_UPDATE, attr)


def link_detach(link_fd: FdLike) -> None:
    """BPF_LINK_DETACH: detach now; the link fd stays valid but defunct."""
    bpf(Cmd.LINK_DETACH, abi.LinkDetachAttr(link_fd=_fd(link_fd)))


# --- the remaining commands -------------------------------------------------------------


def enable_stats(stats_type: int = abi.StatsType.RUN_TIME) -> Fd:
    """BPF_ENABLE_STATS: run-time statistics stay on while the returned fd is open."""
    return _new_fd(Cmd.ENABLE_STATS, abi.EnableStatsAttr(type=int(stats_type)))


def iter_create(link_fd: FdLike, flags: int = 0) -> Fd:
    """BPF_ITER_CREATE: an fd to read() the output of an iterator link."""
    return _new_fd(Cmd.ITER_CREATE, abi.IterCreateAttr(link_fd=_fd(link_fd), flags=flags))


def prog_bind_map(prog_fd: FdLike, map_fd: FdLike, flags: int = 0) -> None:
    """BPF_PROG_BIND_MAP: keep *map_fd* alive as long as the program."""
    bpf(Cmd.PROG_BIND_MAP, abi.ProgBindMapAttr(prog_fd=_fd(prog_fd), map_fd=_fd(map_fd),
                                               flags=flags))


def token_create(bpffs_fd: FdLike, flags: int = 0) -> Fd:
    """BPF_TOKEN_CREATE from an fd of a bpffs mounted with delegation options."""
    return _new_fd(Cmd.TOKEN_CREATE, abi.TokenCreateAttr(flags=flags, bpffs_fd=_fd(bpffs_fd)))


# --- CPUs -------------------------------------------------------------------------------


def parse_cpu_list(text: str) -> list[int]:
    """CPU numbers of a kernel cpu list such as "0-3,5,7-8"."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first = int(lo)
            last = int(hi) if sep else first
        except ValueError:
            raise ValueError(f"bad cpu list {text!r}") from None
        if last < first:
            raise ValueError(f"bad cpu range {part!r} in {text!r}")
        cpus.extend(range(first, last + 1))
    if not cpus:
        raise ValueError(f"empty cpu list {text!r}")
    return cpus


POSSIBLE_CPUS_PATH = "/sys/devices/system/cpu/possible"


@functools.cache
def possible_cpus() -> int:
    """How many CPUs the kernel may ever bring up: the slots of a per-CPU map value."""
    with open(POSSIBLE_CPUS_PATH) as f:
        return len(parse_cpu_list(f.read()))
