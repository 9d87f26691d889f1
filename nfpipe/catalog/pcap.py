"""Classic libpcap files (what tcpdump -w writes, what tcpdump -r and Wireshark read).

Layout (https://www.tcpdump.org/manpages/pcap-savefile.5.html): a 24-byte global
header — magic, version 2.4, thiszone 0, sigfigs 0, snaplen, link type — then per
packet a 16-byte record header (ts seconds, ts fraction, incl_len, orig_len) and
incl_len bytes of the packet.  The magic a1b2c3d4 means microsecond timestamps,
a1b23c4d nanosecond ones; it is written in this machine's byte order and readers
detect the order from it.  nfpipe writes nanosecond files by default (the sample
timestamps are in ns); ``nanoseconds=False`` gives the older microsecond format
for tools that predate it.
"""
from __future__ import annotations

import os
import struct
from typing import BinaryIO

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
VERSION = (2, 4)
LINKTYPE_ETHERNET = 1
MAX_SNAPLEN = 262144


class PcapWriter:
    """Write packets to a pcap file: ``with PcapWriter(path) as w: w.write(data, ts_ns)``."""

    def __init__(self, target: str | os.PathLike | BinaryIO, *, snaplen: int = 65535,
                 linktype: int = LINKTYPE_ETHERNET, nanoseconds: bool = True):
        if not 0 < snaplen <= MAX_SNAPLEN:
            raise ValueError(f"pcap snaplen must be 1..{MAX_SNAPLEN}, not {snaplen}")
        self.snaplen = snaplen
        self.nanoseconds = nanoseconds
        self.count = 0
        if hasattr(target, "write"):
            self._f, self._own = target, False
        else:
            self._f, self._own = open(target, "wb"), True  # noqa: SIM115 - closed by close()
        magic = MAGIC_NSEC if nanoseconds else MAGIC_USEC
        self._f.write(struct.pack("=IHHiIII", magic, *VERSION, 0, 0, snaplen, linktype))

    def write(self, data: bytes, ts_ns: int, orig_len: int | None = None) -> None:
        """One packet: *data* as captured (cut to snaplen), *orig_len* its length on the
        wire (default: len(data)), *ts_ns* nanoseconds since the Unix epoch."""
        data = bytes(data[:self.snaplen])
        orig = len(data) if orig_len is None else orig_len
        if orig < len(data):
            raise ValueError(f"orig_len {orig} is shorter than the {len(data)} captured bytes")
        sec, frac = divmod(int(ts_ns), 1_000_000_000)
        if not self.nanoseconds:
            frac //= 1000
        self._f.write(struct.pack("=IIII", sec & 0xFFFFFFFF, frac, len(data), orig) + data)
        self.count += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_pcap(path: str | os.PathLike) -> tuple[dict, list[tuple[int, int, bytes]]]:
    """A minimal reader for tests and tools: (header fields, [(ts_ns, orig_len, data)])."""
    with open(path, "rb") as f:
        raw = f.read()
    magic_le = struct.unpack_from("<I", raw)[0]
    order = "<" if magic_le in (MAGIC_USEC, MAGIC_NSEC) else ">"
    magic, vmaj, vmin, _zone, _sig, snaplen, link = struct.unpack_from(order + "IHHiIII", raw)
    if magic not in (MAGIC_USEC, MAGIC_NSEC):
        raise ValueError(f"{path}: not a pcap file (magic {magic:#x})")
    mult = 1 if magic == MAGIC_NSEC else 1000
    off, out = 24, []
    while off + 16 <= len(raw):
        sec, frac, incl, orig = struct.unpack_from(order + "IIII", raw, off)
        off += 16
        out.append((sec * 1_000_000_000 + frac * mult, orig, raw[off:off + incl]))
        off += incl
    header = {"magic": magic, "version": (vmaj, vmin), "snaplen": snaplen, "linktype": link}
    return header, out
