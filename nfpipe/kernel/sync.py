"""Waiting for BPF programs: ``rcu_barrier()`` returns once every program that was
running when it was called has finished.

The kernel waits for an RCU grace period after each update of a map-in-map from
user space (``maybe_wait_bpf_programs()`` in kernel/bpf/syscall.c), and XDP and TC
programs run inside RCU read-side sections; so one update of a private
one-slot array-of-maps is a barrier: after it, no packet still runs a program (or
uses a map value) it picked up before.  A filter generation switch and a deploy's
old revision (its pins removed once no packet can be in it) both wait on it.
"""
from __future__ import annotations

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
