"""``RingBuffer``: consume a BPF ring buffer (``BPF_MAP_TYPE_RINGBUF``) from Python.

The kernel exposes a ring buffer map through ``mmap`` on the map's fd
(Documentation/bpf/ringbuf.rst, kernel/bpf/ringbuf.c):

* offset 0, one page, read-write: the consumer page; its first 8 bytes are
  ``consumer_pos``, which only user space writes;
* offset ``page_size``, read-only: the producer page (its first 8 bytes are
  ``producer_pos``) followed by the data area (``max_entries`` bytes, a power
  of two) mapped twice in a row, so a record that wraps past the end of the
  area is still contiguous in memory.

Positions only grow; ``pos & (size - 1)`` is the offset in the data area.  Each
record starts with an 8-byte header: a 32-bit length whose bit 31 (BUSY) says
the producer has not committed it yet and bit 30 (DISCARD) says the producer
threw it away, then a 32-bit page offset the kernel uses internally.  Records
are padded to 8 bytes.  The consumer reads records from ``consumer_pos`` up to
``producer_pos``, stops at the first BUSY one (records commit out of order but
are consumed in order), skips DISCARD ones, and publishes its new position
with one aligned 8-byte store, which frees the space for the producers.

Memory ordering: the positions and headers are read and written with single
aligned 8-/4-byte accesses through ctypes.  On x86-64 (TSO) these plain
accesses give the acquire/release order the protocol needs; on weaker memory
models (arm64) Python offers no fences, so this reader is best-effort there.
"""
from __future__ import annotations

import ctypes
import mmap
import select
from collections.abc import Iterator

from nfpipe.kernel import abi, libc

RINGBUF_BUSY_BIT = 1 << 31
RINGBUF_DISCARD_BIT = 1 << 30
RINGBUF_HDR_SZ = 8


def record_size(length: int) -> int:
    """Bytes a record of *length* payload bytes takes in the ring (header, padding)."""
    return (length + RINGBUF_HDR_SZ + 7) & ~7


class RingBuffer:
    """The consumer side of one ring buffer map (a ``Map``, or anything with ``fileno()``,
    ``type`` and ``max_entries``).  Not thread-safe: one consumer per ring buffer."""

    def __init__(self, map):
        if getattr(map, "type", abi.MapType.RINGBUF) != abi.MapType.RINGBUF:
            raise TypeError(f"map {getattr(map, 'name', map)!r} is not a BPF_MAP_TYPE_RINGBUF")
        self.map = map
        self.size = int(map.max_entries)
        if self.size <= 0 or self.size & (self.size - 1):
            raise ValueError(f"ring buffer size {self.size} is not a power of two")
        self.mask = self.size - 1
        fd = map.fileno()
        page = mmap.PAGESIZE
        self._page = page
        self._cons_len = page
        self._prod_len = page + 2 * self.size
        self._cons_addr = _mmap(self._cons_len, mmap.PROT_READ | mmap.PROT_WRITE, fd, 0)
        try:
            self._prod_addr = _mmap(self._prod_len, mmap.PROT_READ, fd, page)
        except BaseException:
            _munmap(self._cons_addr, self._cons_len)
            raise
        self._data_addr = self._prod_addr + page
        # Aligned 8-byte views of the two positions (the mappings are page-aligned).
        self._cons_pos = ctypes.c_uint64.from_address(self._cons_addr)
        self._prod_pos = ctypes.c_uint64.from_address(self._prod_addr)
        self._epoll: select.epoll | None = None

    # --- positions ---------------------------------------------------------------

    @property
    def consumer_pos(self) -> int:
        return self._cons_pos.value

    @property
    def producer_pos(self) -> int:
        return self._prod_pos.value

    def available(self) -> int:
        """Bytes between the consumer and the producer (records, headers and padding)."""
        return self.producer_pos - self.consumer_pos

    # --- consuming -------------------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        """Yield the committed records, in order, advancing the consumer after each."""
        cons = self.consumer_pos
        while True:
            prod = self.producer_pos
            if cons >= prod:
                return
            hdr_addr = self._data_addr + (cons & self.mask)
            hdr = ctypes.c_uint32.from_address(hdr_addr).value
            if hdr & RINGBUF_BUSY_BIT:
                return                     # reserved, not committed yet: later records wait
            length = hdr & ~(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT)
            if record_size(length) > min(self.size, prod - cons):
                # Never read past the double mapping on a corrupt header or position.
                raise RuntimeError(f"ring buffer {getattr(self.map, 'name', '')!r}: record "
                                   f"of {length} bytes at position {cons} overruns the "
                                   f"producer position {prod}")
            record = None
            if not hdr & RINGBUF_DISCARD_BIT:
                # Contiguous even across the end of the area: it is mapped twice.
                record = ctypes.string_at(hdr_addr + RINGBUF_HDR_SZ, length)
            cons += record_size(length)
            self._cons_pos.value = cons     # one aligned store: space is free again
            if record is not None:
                yield record

    def drain(self, limit: int | None = None) -> list[bytes]:
        """Every committed record now in the ring (at most *limit*)."""
        out = []
        for rec in self:
            out.append(rec)
            if limit is not None and len(out) >= limit:
                break
        return out

    def poll(self, timeout: float | None = None) -> bool:
        """Wait until the ring holds data (epoll on the map fd); True if it does."""
        if self.available():
            return True
        if self._epoll is None:
            self._epoll = select.epoll()
            self._epoll.register(self.map.fileno(), select.EPOLLIN)
        events = self._epoll.poll(-1 if timeout is None else timeout)
        return bool(events) or self.available() > 0

    # --- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._cons_addr:
            _munmap(self._cons_addr, self._cons_len)
            _munmap(self._prod_addr, self._prod_len)
            self._cons_addr = self._prod_addr = self._data_addr = 0

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _mmap(length: int, prot: int, fd: int, offset: int) -> int:
    """The producer side must be mapped read-only, which Python's mmap object cannot
    hand out the address of: libc's mmap(2) does."""
    return libc.mmap(length, prot, mmap.MAP_SHARED, fd, offset, "mmap of ring buffer")


def _munmap(addr: int, length: int) -> None:
    libc.munmap(addr, length)
