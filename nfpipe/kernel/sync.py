"""Waiting for BPF programs: ``rcu_barrier()`` returns once every program that was
running when it was called has finished.

The kernel waits for an RCU grace period after each update of a map-in-map from
user space (``maybe_wait_bpf_programs()`` in kernel/bpf/syscall.c), and XDP and TC
programs run inside RCU read-side sections; so one update of a private
one-slot array-of-maps is a barrier: after it, no packet still runs a program (or
uses a map value) it picked up before.  A filter generation switch and a deploy's
old revision (its pins removed once no packet can be in it) both wait on it;
``GracePeriod`` is one begun in the background, to wait on later.
"""
from __future__ import annotations

import os
import struct
import threading

from nfpipe.kernel import abi, syscall as sc

_lock = threading.Lock()
_barrier: tuple[sc.Fd, sc.Fd] | None = None


def rcu_barrier() -> None:
    """Wait until every BPF program running now has finished (synchronize_rcu())."""
    global _barrier
    with _lock:
        if _barrier is None:
            inner = sc.map_create(abi.MapType.ARRAY, 4, 4, 1, name="nfp_rcu_inner")
            outer = sc.map_create(abi.MapType.ARRAY_OF_MAPS, 4, 4, 1, inner_map_fd=inner,
                                  name="nfp_rcu_barrier")
            _barrier = (outer, inner)
        outer, inner = _barrier
    sc.map_update_elem(outer, struct.pack("<I", 0), struct.pack("<I", int(inner)), 0)


class GracePeriod:
    """A grace period begun now and waited for in a thread of its own: ``wait()``
    returns (at once, when it is over) once every BPF program running at its start has
    finished.  A filter begins one after each generation switch and waits on it before
    the next rewrites the generation it left: a process that changes rules again and
    again (the agent, the bench) seldom waits then, where a barrier of its own costs
    5-20 ms.  In a forked child the thread is not there: it waits on a barrier."""

    def __init__(self):
        self._pid = os.getpid()
        self._done = threading.Event()
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name="nfp-grace", daemon=True).start()

    def _run(self) -> None:
        try:
            rcu_barrier()
        except BaseException as exc:    # handed to wait()
            self._error = exc
        finally:
            self._done.set()

    def wait(self) -> None:
        if os.getpid() != self._pid:
            rcu_barrier()
            return
        self._done.wait()
        if self._error is not None:
            raise self._error
