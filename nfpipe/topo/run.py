"""Running things inside a network namespace: commands and Python callables.

Commands: ``subprocess`` with a ``preexec_fn`` that calls setns(2) in the child
between fork and exec, so the command (and everything it starts) lives in the
namespace.  Only the network namespace changes: the mount namespace, and so
/sys, /proc/<pid> and /sys/fs/bpf, stay the caller's (unlike ``ip netns exec``,
which also remounts /sys).  Netlink, sockets and /proc/sys/net follow the
network namespace, which is what the tools we run need.

Callables: ``start(nspath, fn, ...)`` forks; the child enters the namespace,
calls ``fn`` and sends back its pickled result (or exception) through a pipe.
The result must be picklable; ``fn`` need not be (it is never sent).
"""
from __future__ import annotations

import errno
import os
import pickle
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from nfpipe.errors import NfpipeError
from nfpipe.kernel.netns import enter_netns


class NamespaceCallError(NfpipeError):
    """A callable run in a namespace failed in a way that has no exception to re-raise."""


def _preexec(nspath: str, user_preexec: Callable | None):
    def fn():
        enter_netns(nspath)
        if user_preexec is not None:
            user_preexec()
    return fn


def run(nspath: str, argv, **kwargs) -> subprocess.CompletedProcess:
    kwargs["preexec_fn"] = _preexec(nspath, kwargs.get("preexec_fn"))
    return subprocess.run(argv, **kwargs)


def popen(nspath: str, argv, **kwargs) -> subprocess.Popen:
    kwargs["preexec_fn"] = _preexec(nspath, kwargs.get("preexec_fn"))
    return subprocess.Popen(argv, **kwargs)


def _refresh_scapy() -> None:
    """scapy caches interfaces and routes at import: re-read them in the new namespace."""
    conf = getattr(sys.modules.get("scapy.config"), "conf", None)
    if conf is None:
        return
    for what in ("ifaces", "route", "route6"):
        obj = getattr(conf, what, None)
        for meth in ("reload", "resync"):
            if hasattr(obj, meth):
                try:
                    getattr(obj, meth)()
                except Exception:   # a scapy without IPv6 etc.: leave that cache alone
                    pass
                break


class Call:
    """A callable running in a namespace in a forked child; ``result()`` waits for it."""

    def __init__(self, pid: int, fd: int, where: str):
        self.pid, self._fd, self.where = pid, fd, where
        self._buf = bytearray()
        self._status: int | None = None
        self._done = False

    def _read(self, deadline: float | None) -> bool:
        while self._fd is not None:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], wait)
            if not ready:
                return False
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                os.close(self._fd)
                self._fd = None
                break
            self._buf += chunk
        return True

    def _reap(self) -> None:
        if self._status is None:
            _, self._status = os.waitpid(self.pid, 0)

    def done(self) -> bool:
        if self._fd is None:
            return True
        ready, _, _ = select.select([self._fd], [], [], 0)
        return bool(ready) and self._read(time.monotonic())

    def result(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._read(deadline):
            self.kill()
            raise TimeoutError(f"callable in {self.where} did not finish within {timeout} s; "
                               f"it was killed")
        self._reap()
        if not self._buf:
            raise NamespaceCallError(
                f"the child process running a callable in {self.where} died without a result "
                f"(wait status {self._status}); it may have been killed or called os._exit")
        kind, value, tb = pickle.loads(bytes(self._buf))
        if kind == "ok":
            return value
        if isinstance(value, BaseException):
            if hasattr(value, "add_note"):
                value.add_note(f"(raised in {self.where}; child traceback:)\n{tb}")
            raise value
        raise NamespaceCallError(f"callable in {self.where} failed: {value}\n{tb}")

    def kill(self) -> None:
        if self._status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        try:
            if self._status is None:
                self.kill()
        except Exception:
            pass


def start(nspath: str, fn: Callable, args=(), kwargs=None, *, where: str = "") -> Call:
    """Fork a child that enters *nspath*, runs ``fn(*args, **kwargs)`` and reports back."""
    kwargs = kwargs or {}
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:    # child: never return into the caller's stack
        code = 0
        try:
            os.close(r)
            try:
                enter_netns(nspath)
                _refresh_scapy()
                out = ("ok", fn(*args, **kwargs), "")
            except BaseException as exc:
                out = ("err", exc, traceback.format_exc())
            try:
                data = pickle.dumps(out)
            except Exception as exc:
                data = pickle.dumps(("err", f"result not picklable ({exc!r}): "
                                            f"{out[1]!r}"[:2000], out[2]))
            view = memoryview(data)
            while view:
                try:
                    n = os.write(w, view)
                except OSError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    raise
                view = view[n:]
        except BaseException:
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(w)
    return Call(pid, r, where or nspath)
