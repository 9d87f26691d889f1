"""``Attachment``: a program attached to an interface, the live object every attach
function returns (see ``nfpipe.attach`` for the kinds and their lifetimes)."""
from __future__ import annotations

import os

from nfpipe.attach.query import query
from nfpipe.errors import AttachError
from nfpipe.kernel import abi, syscall as sc


def prog_fd(prog) -> int:
    """The fd number of a Program, an Fd, an int or anything with fileno()."""
    if isinstance(prog, int):
        return prog
    if hasattr(prog, "fileno"):
        return prog.fileno()
    raise TypeError(f"expected a Program or a program fd, not {type(prog).__name__}")


def prog_desc(fd: int) -> tuple[int, str, int]:
    info = sc.prog_info(fd)
    return info.id, info.name_str, info.type


def type_name(t: int) -> str:
    try:
        return abi.ProgType(t).name.lower()
    except ValueError:
        return str(t)


class Attachment:
    """A program attached to an interface.  See the module docstring for lifetimes."""

    kind = "?"        # "xdp" or "tc"
    via = "?"         # "link", "netlink" or "clsact"

    def __init__(self, *, iface: str, ifindex: int, netns, mode: str, prog_id: int,
                 prog_name: str, direction: str | None = None):
        self.iface, self.ifindex, self.netns = iface, ifindex, netns
        self.mode, self.direction = mode, direction
        self.prog_id, self.prog_name = prog_id, prog_name
        self.attempts: list[str] = []     # what was tried before this stuck (auto modes)
        self.detached = False

    def detach(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Forget this object; what the kernel holds stays (see the subclass)."""

    def update(self, new_prog, *, check_old: bool = True) -> None:
        raise NotImplementedError

    @property
    def attached(self) -> bool:
        """Whether our program is still what the kernel runs for this attachment."""
        if self.detached:
            return False
        info = query(self.iface, netns=self.netns)
        return any(e["prog_id"] == self.prog_id for e in entries_for(info, self))

    def info(self) -> dict:
        return {"kind": self.kind, "via": self.via, "iface": self.iface,
                "ifindex": self.ifindex, "netns": None if self.netns is None
                else os.fspath(self.netns), "mode": self.mode, "direction": self.direction,
                "prog_id": self.prog_id, "prog_name": self.prog_name,
                "detached": self.detached}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.detach()
        self.close()

    def __repr__(self) -> str:
        d = f" {self.direction}" if self.direction else ""
        state = " detached" if self.detached else ""
        return (f"<{type(self).__name__} {self.kind}{d} {self.mode} on {self.iface} "
                f"prog {self.prog_id} '{self.prog_name}'{state}>")

    def _error(self, message: str, **kw) -> AttachError:
        return AttachError(message, iface=self.iface, mode=self.mode, **kw)


def entries_for(info: dict, att: Attachment) -> list[dict]:
    if att.kind == "xdp":
        return [e for e in info["xdp"] if e["mode"] == att.mode]
    return [e for e in info["tc"][att.direction] if e["via"] == ("tcx" if att.via == "link"
                                                                  else "clsact")]


def update(attachment: Attachment, new_prog, *, check_old: bool = True) -> None:
    """Atomically swap the program of *attachment* (BPF_LINK_UPDATE with the old program
    checked, or netlink XDP_FLAGS_REPLACE with the expected fd, or a cls_bpf replace)."""
    attachment.update(new_prog, check_old=check_old)


def detach(attachment: Attachment) -> None:
    attachment.detach()
