"""What every live kernel object of the loader shares: one owned fd, closing, pinning."""
from __future__ import annotations

import os

from nfpipe.kernel import bpffs, syscall as sc


class FdObject:
    """Owns one bpf object fd (``Map``, ``Program``); closable and a context manager."""

    noun = "object"          # "map", "program", "link": for messages

    def __init__(self, fd: sc.Fd, name: str):
        self._fd = fd
        self.name = name
        self.pinned_at: str | None = None

    @property
    def fd(self) -> sc.Fd:
        if self._fd.closed:
            raise ValueError(f"{self.noun} '{self.name}' is closed")
        return self._fd

    def fileno(self) -> int:
        return int(self.fd)

    def close(self) -> None:
        self._fd.close()

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _state(self) -> str:
        return "closed" if self.closed else f"fd={self._fd.fd}"

    def pin(self, path: str | os.PathLike) -> None:
        """Pin at *path* on bpffs (mounted first when absent); it then outlives this process."""
        bpffs.pin(self.fd, path)
        self.pinned_at = os.fspath(path)

    def unpin(self) -> None:
        if self.pinned_at:
            bpffs.unpin(self.pinned_at)
            self.pinned_at = None
