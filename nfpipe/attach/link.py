"""``Link``: a bpf_link attaching a program to an interface (XDP or tcx).

The link owns its fd: ``close()`` gives it up, and an unpinned link then
disappears with its attachment (the kernel frees a link with its last
reference); a pinned one stays.  ``detach()`` removes the attachment now
(``BPF_LINK_DETACH``), whoever else holds the link.
"""
from __future__ import annotations

import errno as _errno
import os

from nfpipe.attach.base import Attachment, prog_desc, prog_fd
from nfpipe.attach.query import XDP_MODES, iproute, prog_summary, where, xdp_state
from nfpipe.errors import AttachError, KernelError
from nfpipe.kernel import abi, bpffs, syscall as sc
from nfpipe.kernel.netns import ifname as _ifname, in_netns
from nfpipe.loader.fdobject import FdObject


class Link(FdObject, Attachment):
    """A bpf_link attaching a program to an interface (XDP or tcx); owns the link fd."""

    via = "link"

    noun = "link"

    def __init__(self, fd: sc.Fd, *, kind: str, **kw):
        Attachment.__init__(self, **kw)
        FdObject.__init__(self, fd, kw["iface"])
        self.kind = kind

    @property
    def id(self) -> int:
        return sc.link_info(self.fd).id

    def close(self) -> None:
        """Release the fd: an unpinned link goes away with it (and detaches), a pinned
        link stays attached."""
        FdObject.close(self)

    def __exit__(self, *exc) -> None:
        self.close()

    def detach(self) -> None:
        """BPF_LINK_DETACH: the program leaves the interface now, pinned or not."""
        if self.detached:
            return
        if self._fd.closed:
            raise self._error("cannot detach: the link fd is closed (open it again with "
                              "Link.from_pin)")
        try:
            sc.link_detach(self._fd)
        except KernelError as exc:
            if exc.errno not in (_errno.ENOLINK, _errno.ENOENT):
                raise self._error(f"cannot detach the {self.kind} link on "
                                  f"{where(self.iface, self.netns)}: {exc}") from None
        self.detached = True

    @classmethod
    def from_pin(cls, path: str | os.PathLike, *, netns=None) -> Link:
        """Open the link pinned at *path*; *netns* is the namespace of its interface
        (link info holds only an ifindex)."""
        fd = bpffs.open_pinned(path)
        try:
            link = cls._from_fd(fd, netns=netns)
        except BaseException:
            fd.close()
            raise
        link.pinned_at = os.fspath(path)
        return link

    @staticmethod
    def pinned_prog_id(path: str | os.PathLike) -> int:
        """The id of the program the link pinned at *path* runs: one bpf() call, where
        ``from_pin`` also asks netlink for the interface's name and XDP mode (what an
        update that finds the link already on its program does not need)."""
        with bpffs.open_pinned(path) as fd:
            return sc.link_info(fd).prog_id

    @classmethod
    def from_id(cls, link_id: int, *, netns=None) -> Link:
        fd = sc.link_get_fd_by_id(link_id)
        try:
            return cls._from_fd(fd, netns=netns)
        except BaseException:
            fd.close()
            raise

    @classmethod
    def _from_fd(cls, fd: sc.Fd, *, netns) -> Link:
        info = sc.link_info(fd)
        if info.type == abi.LinkType.XDP:
            index, kind, direction = info.xdp.ifindex, "xdp", None
        elif info.type == abi.LinkType.TCX:
            index, kind = info.tcx.ifindex, "tc"
            direction = ("ingress" if info.tcx.attach_type == abi.AttachType.TCX_INGRESS
                         else "egress")
        else:
            raise AttachError(f"link {info.id} is not an XDP or tcx link (type {info.type})")
        name = _ifname(index, netns) or f"if{index}"
        summary = prog_summary(info.prog_id)
        mode = "tcx"
        if kind == "xdp":
            mode = "?"
            with in_netns(netns), iproute() as ipr:
                state = xdp_state(ipr, index)
            for m in XDP_MODES:
                if state.get(m) == info.prog_id:
                    mode = m
        return cls(fd, kind=kind, iface=name, ifindex=index, netns=netns, mode=mode,
                   prog_id=info.prog_id, prog_name=summary.get("prog_name") or "",
                   direction=direction)

    def info(self) -> dict:
        out = super().info()
        out["pinned_at"] = self.pinned_at
        if not self._fd.closed:
            li = sc.link_info(self._fd)
            out["link_id"] = li.id
            out["kernel_prog_id"] = li.prog_id
            out["kernel_ifindex"] = li.xdp.ifindex if self.kind == "xdp" else li.tcx.ifindex
        return out

    def update(self, new_prog, *, check_old: bool = True) -> None:
        """BPF_LINK_UPDATE: swap the program atomically.  With *check_old* the swap only
        happens if the link still runs the program we last put there (BPF_F_REPLACE)."""
        new_fd = prog_fd(new_prog)
        new_id, new_name, new_type = prog_desc(new_fd)
        old = None
        try:
            if check_old:
                try:
                    old = sc.prog_get_fd_by_id(self.prog_id)
                except KernelError:
                    raise self._error(f"cannot update the link on {self.iface}: its program "
                                      f"{self.prog_id} is gone") from None
            sc.link_update(self.fd, new_fd, old_prog_fd=old or 0)
        except KernelError as exc:
            why = str(exc)
            if exc.errno == _errno.EPERM and check_old:
                why = (f"the link no longer runs program {self.prog_id} '{self.prog_name}' "
                       f"(someone replaced it)")
            elif exc.errno == _errno.EINVAL:
                why += " (the new program must have the same type and attach type)"
            raise self._error(f"cannot replace the program of the {self.kind} link on "
                              f"{where(self.iface, self.netns)}: {why}") from None
        finally:
            if old is not None:
                old.close()
        self.prog_id, self.prog_name = new_id, new_name
