"""``Target``: one interface, optionally inside a network namespace, as every command
that takes an interface writes it: ``IFACE`` or ``NETNS:IFACE``."""
from __future__ import annotations

from dataclasses import dataclass

from nfpipe.errors import UsageError


@dataclass(frozen=True)
class Target:
    """One interface, optionally inside a network namespace ("ns:eth0")."""

    ifname: str
    netns: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        ns, sep, name = text.rpartition(":")
        if not name or (sep and not ns):
            raise UsageError(f"bad interface {text!r}: give IFACE or NETNS:IFACE")
        return cls(name, ns if sep else None)

    def __str__(self) -> str:
        return f"{self.netns}:{self.ifname}" if self.netns else self.ifname
