"""Attaching programs to interfaces: XDP and TC, through bpf links or netlink.

Every attach function returns an ``Attachment``, a live object:

* ``Link`` owns a bpf_link fd (XDP link or tcx link).  ``close()`` gives the fd
  up: an unpinned link then disappears with its program attachment (the kernel
  frees a link with its last reference), a pinned one stays.  ``detach()``
  removes the attachment now (``BPF_LINK_DETACH``), whoever else holds the link.
* ``NetlinkXdp`` is an XDP program set through rtnetlink (``IFLA_XDP``): the
  attachment belongs to the interface, not to a fd, so ``close()`` leaves it in
  place and ``detach()`` removes it — only if our program is still the one
  attached (``XDP_FLAGS_REPLACE`` with ``IFLA_XDP_EXPECTED_FD``).
* ``ClsactFilter`` is a cls_bpf filter (direct-action) under a clsact qdisc;
  ``detach()`` deletes the filter if it still runs our program, and the clsact
  qdisc only if this attachment created it and no filter is left under it.

As a context manager an ``Attachment`` is scoped to the ``with`` block: a
``Link`` is closed (so gone unless pinned), a netlink or clsact attachment is
detached.

All of it runs in the interface's network namespace (``netns=``, see
``nfpipe.attach.netns``); failures are ``AttachError`` naming the interface,
the mode, and the kernel's reason (netlink's extack message when there is one).
"""
from __future__ import annotations

import errno as _errno
import os
import struct
from typing import Any

from nfpipe.attach import netdev
from nfpipe.attach.netns import ifindex as _ifindex, ifname as _ifname, in_netns
from nfpipe.errors import AttachError, KernelError, errno_name
from nfpipe.kernel import abi
from nfpipe.kernel import syscall as sc

XDP_MODES = ("native", "generic", "offload")
XDP_MODE_FLAGS = {"native": abi.XDP_FLAGS_DRV_MODE, "generic": abi.XDP_FLAGS_SKB_MODE,
                  "offload": abi.XDP_FLAGS_HW_MODE}
#: IFLA_XDP_ATTACHED values (enum XDP_ATTACHED_*)
_ATTACHED = {0: None, 1: "native", 2: "generic", 3: "offload", 4: "multi"}
_PYROUTE_ATTACHED = {None: None, "xdp": "native", "xdpgeneric": "generic",
                     "xdpoffload": "offload", "xdpmulti": "multi"}
_MODE_PROG_ID_ATTR = {"native": "IFLA_XDP_DRV_PROG_ID", "generic": "IFLA_XDP_SKB_PROG_ID",
                      "offload": "IFLA_XDP_HW_PROG_ID"}

DIRECTIONS = ("ingress", "egress")
TCX_ATTACH = {"ingress": abi.AttachType.TCX_INGRESS, "egress": abi.AttachType.TCX_EGRESS}
TC_H_CLSACT = 0xFFFFFFF1          # TC_H_CLSACT == TC_H_INGRESS: the clsact qdisc's parent
CLSACT_HANDLE = 0xFFFF0000        # the clsact/ingress qdisc handle ffff:
CLSACT_PARENT = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}   # ffff:fff2 / ffff:fff3
TCA_BPF_FLAG_ACT_DIRECT = 1
# cls_bpf options (enum TCA_BPF_* in linux/pkt_cls.h)
TCA_BPF_NAME, TCA_BPF_FLAGS, TCA_BPF_TAG, TCA_BPF_ID = 7, 8, 10, 11
ETH_P_ALL = 0x0003

__all__ = ["Attachment", "Link", "NetlinkXdp", "ClsactFilter", "attach_xdp", "attach_tc",
           "query", "update", "detach", "XDP_MODES", "DIRECTIONS"]


# --- helpers ------------------------------------------------------------------------------


def _prog_fd(prog) -> int:
    """The fd number of a Program, an Fd, an int or anything with fileno()."""
    if isinstance(prog, int):
        return prog
    if hasattr(prog, "fileno"):
        return prog.fileno()
    raise TypeError(f"expected a Program or a program fd, not {type(prog).__name__}")


def _prog_desc(fd: int) -> tuple[int, str, int]:
    info = sc.prog_info(fd)
    return info.id, info.name_str, info.type


def prog_summary(prog_id: int) -> dict:
    """id, name, type and tag of the program *prog_id* (name None if it is gone)."""
    try:
        with sc.prog_get_fd_by_id(prog_id) as fd:
            info = sc.prog_info(fd)
            try:
                type_name = abi.ProgType(info.type).name.lower()
            except ValueError:
                type_name = str(info.type)
            return {"prog_id": prog_id, "prog_name": info.name_str, "prog_type": type_name,
                    "prog_tag": info.tag_hex}
    except KernelError:
        return {"prog_id": prog_id, "prog_name": None}


def _where(iface: str, netns) -> str:
    return f"{iface!r}" + (f" (netns {os.fspath(netns)!r})" if netns is not None else "")


def _ipr():
    from pyroute2 import IPRoute
    return IPRoute(ext_ack=True)


def _nl_reason(exc) -> str:
    """The text of a pyroute2 NetlinkError: the kernel's extack message when it sent one."""
    args = getattr(exc, "args", ())
    text = args[1] if len(args) > 1 and args[1] else os.strerror(getattr(exc, "code", 0) or 0)
    return f"{text} ({errno_name(getattr(exc, 'code', 0) or 0)})"


def _xdp_state(ipr, index: int) -> dict:
    """IFLA_XDP of *index*: {'attached': mode|None, 'native': id, 'generic': id, ...}."""
    links = ipr.get_links(index)
    x = links[0].get_attr("IFLA_XDP") if links else None
    state: dict[str, Any] = {"attached": None}
    if not x:
        return state
    attrs = {k: x.get_attr(k) for k in ("IFLA_XDP_ATTACHED", "IFLA_XDP_PROG_ID",
                                         *_MODE_PROG_ID_ATTR.values())}
    state["attached"] = _PYROUTE_ATTACHED.get(attrs.get("IFLA_XDP_ATTACHED"),
                                              attrs.get("IFLA_XDP_ATTACHED"))
    prog_id = attrs.get("IFLA_XDP_PROG_ID")
    for mode, attr in _MODE_PROG_ID_ATTR.items():
        if attrs.get(attr):
            state[mode] = attrs[attr]
    # a single program reports IFLA_XDP_PROG_ID only with its mode in IFLA_XDP_ATTACHED
    if prog_id and state["attached"] in XDP_MODES and state["attached"] not in state:
        state[state["attached"]] = prog_id
    return state


def _xdp_links_by_ifindex(index: int) -> dict[int, int]:
    """prog id → link id of the XDP links on *index* (ifindex numbers are per namespace:
    matched again against the interface's program ids by the caller)."""
    out = {}
    for lid in sc.iter_link_ids():
        try:
            with sc.link_get_fd_by_id(lid) as lfd:
                info = sc.link_info(lfd)
        except KernelError:
            continue
        if info.type == abi.LinkType.XDP and info.xdp.ifindex == index and info.prog_id:
            out.setdefault(info.prog_id, lid)
    return out


def _describe_xdp(iface: str, netns, index: int) -> str:
    with in_netns(netns), _ipr() as ipr:
        state = _xdp_state(ipr, index)
    found = [(m, state[m]) for m in XDP_MODES if m in state]
    if not found:
        return "nothing is attached"
    links = _xdp_links_by_ifindex(index)
    parts = []
    for mode, pid in found:
        s = prog_summary(pid)
        via = f"link {links[pid]}" if pid in links else "netlink"
        parts.append(f"program {pid} '{s.get('prog_name')}' in {mode} mode via {via}")
    return "; ".join(parts)


# --- attachments --------------------------------------------------------------------------


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
        return any(e["prog_id"] == self.prog_id for e in _entries(info, self))

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


def _entries(info: dict, att: Attachment) -> list[dict]:
    if att.kind == "xdp":
        return [e for e in info["xdp"] if e["mode"] == att.mode]
    return [e for e in info["tc"][att.direction] if e["via"] == ("tcx" if att.via == "link"
                                                                  else "clsact")]


class Link(Attachment):
    """A bpf_link attaching a program to an interface (XDP or tcx); owns the link fd."""

    via = "link"

    def __init__(self, fd: sc.Fd, *, kind: str, **kw):
        super().__init__(**kw)
        self.kind = kind
        self._fd = fd
        self.pinned_at: str | None = None

    @property
    def fd(self) -> sc.Fd:
        if self._fd.closed:
            raise ValueError(f"link on {self.iface} is closed")
        return self._fd

    def fileno(self) -> int:
        return int(self.fd)

    @property
    def closed(self) -> bool:
        return self._fd.closed

    @property
    def id(self) -> int:
        return sc.link_info(self.fd).id

    def close(self) -> None:
        """Release the fd: an unpinned link goes away with it (and detaches), a pinned
        link stays attached."""
        self._fd.close()

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
                                  f"{_where(self.iface, self.netns)}: {exc}") from None
        self.detached = True

    def pin(self, path: str | os.PathLike) -> None:
        """Pin the link on bpffs: it (and the attachment) outlives this process."""
        from nfpipe.kernel import bpffs
        bpffs.pin(self.fd, path)
        self.pinned_at = os.fspath(path)

    def unpin(self) -> None:
        from nfpipe.kernel import bpffs
        if self.pinned_at:
            bpffs.unpin(self.pinned_at)
            self.pinned_at = None

    @classmethod
    def from_pin(cls, path: str | os.PathLike, *, netns=None) -> Link:
        """Open the link pinned at *path*; *netns* is the namespace of its interface
        (link info holds only an ifindex)."""
        from nfpipe.kernel import bpffs
        fd = bpffs.open_pinned(path)
        try:
            link = cls._from_fd(fd, netns=netns)
        except BaseException:
            fd.close()
            raise
        link.pinned_at = os.fspath(path)
        return link

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
            with in_netns(netns), _ipr() as ipr:
                state = _xdp_state(ipr, index)
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
        new_fd = _prog_fd(new_prog)
        new_id, new_name, new_type = _prog_desc(new_fd)
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
                              f"{_where(self.iface, self.netns)}: {why}") from None
        finally:
            if old is not None:
                old.close()
        self.prog_id, self.prog_name = new_id, new_name


class NetlinkXdp(Attachment):
    """An XDP program attached through rtnetlink (no link); keeps a dup of the program
    fd so detach and replace can name the program they expect."""

    kind = "xdp"
    via = "netlink"

    def __init__(self, prog_fd: sc.Fd, **kw):
        super().__init__(**kw)
        self._prog = prog_fd

    def _set(self, fd: int, flags: int, expected: int | None = None):
        attrs = [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]
        if expected is not None:
            attrs.append(("IFLA_XDP_EXPECTED_FD", expected))
        with in_netns(self.netns), _ipr() as ipr:
            ipr.link("set", index=self.ifindex, xdp={"attrs": attrs})

    def detach(self) -> None:
        """Remove our program (only if it is still the one attached in our mode)."""
        if self.detached:
            return
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            self._set(-1, XDP_MODE_FLAGS[self.mode] | abi.XDP_FLAGS_REPLACE, int(self._prog))
        except NetlinkError as exc:
            if exc.code == _errno.EEXIST:       # "Active program does not match expected"
                raise self._error(
                    f"not detaching XDP from {_where(self.iface, self.netns)}: our program "
                    f"{self.prog_id} is no longer the one attached "
                    f"({_describe_xdp(self.iface, self.netns, self.ifindex)})",
                    netlink_error=_nl_reason(exc)) from None
            raise self._error(f"cannot detach XDP from {_where(self.iface, self.netns)}",
                              netlink_error=_nl_reason(exc)) from None
        self.detached = True
        self._prog.close()

    def close(self) -> None:
        self._prog.close()

    def __exit__(self, *exc) -> None:
        if not self._prog.closed:
            self.detach()
        self.close()

    def update(self, new_prog, *, check_old: bool = True) -> None:
        """Atomic replacement through netlink: XDP_FLAGS_REPLACE with the expected fd."""
        from pyroute2.netlink.exceptions import NetlinkError
        new_fd = _prog_fd(new_prog)
        new_id, new_name, _ = _prog_desc(new_fd)
        flags = XDP_MODE_FLAGS[self.mode]
        expected = None
        if check_old:
            flags |= abi.XDP_FLAGS_REPLACE
            expected = int(self._prog)
        try:
            self._set(new_fd, flags, expected)
        except NetlinkError as exc:
            raise self._error(f"cannot replace the XDP program on "
                              f"{_where(self.iface, self.netns)}",
                              netlink_error=_nl_reason(exc)) from None
        self._prog.close()
        self._prog = sc.Fd(os.dup(new_fd))
        self.prog_id, self.prog_name = new_id, new_name


class ClsactFilter(Attachment):
    """A direct-action cls_bpf filter under the clsact qdisc of an interface."""

    kind = "tc"
    via = "clsact"

    def __init__(self, *, priority: int, handle: int, created_qdisc: bool, **kw):
        super().__init__(**kw)
        self.priority, self.handle, self.created_qdisc = priority, handle, created_qdisc

    def info(self) -> dict:
        out = super().info()
        out.update(priority=self.priority, handle=self.handle,
                   created_qdisc=self.created_qdisc)
        return out

    def _ours(self, ipr) -> dict | None:
        for f in _cls_bpf_filters(ipr, self.ifindex, self.direction):
            if f["priority"] == self.priority and f["handle"] == self.handle:
                return f
        return None

    def detach(self) -> None:
        if self.detached:
            return
        from pyroute2.netlink.exceptions import NetlinkError
        with in_netns(self.netns), _ipr() as ipr:
            mine = self._ours(ipr)
            if mine is not None and mine["prog_id"] != self.prog_id:
                raise self._error(
                    f"not deleting the tc filter prio {self.priority} handle {self.handle:#x} "
                    f"on {_where(self.iface, self.netns)}: it now runs program "
                    f"{mine['prog_id']} '{mine['prog_name']}', not ours ({self.prog_id})")
            if mine is not None:
                try:
                    ipr.tc("del-filter", "bpf", self.ifindex, self.handle,
                           parent=CLSACT_PARENT[self.direction], prio=self.priority)
                except NetlinkError as exc:
                    raise self._error(f"cannot delete the tc filter on "
                                      f"{_where(self.iface, self.netns)}",
                                      netlink_error=_nl_reason(exc)) from None
            self.detached = True
            if self.created_qdisc and _has_clsact(ipr, self.ifindex):
                left = [f for d in DIRECTIONS for f in _all_filters(ipr, self.ifindex, d)]
                if not left:
                    try:
                        ipr.tc("del", "clsact", self.ifindex)
                    except NetlinkError as exc:
                        if exc.code not in (_errno.ENOENT, _errno.EINVAL):
                            raise self._error("cannot remove the clsact qdisc we created on "
                                              f"{_where(self.iface, self.netns)}",
                                              netlink_error=_nl_reason(exc)) from None
                self.created_qdisc = False

    def update(self, new_prog, *, check_old: bool = True) -> None:
        """Replace the filter's program (cls_bpf swaps it in one change)."""
        from pyroute2.netlink.exceptions import NetlinkError
        new_fd = _prog_fd(new_prog)
        new_id, new_name, _ = _prog_desc(new_fd)
        with in_netns(self.netns), _ipr() as ipr:
            mine = self._ours(ipr)
            if mine is None:
                raise self._error(f"the tc filter prio {self.priority} on {self.iface} is gone")
            if check_old and mine["prog_id"] != self.prog_id:
                raise self._error(f"the tc filter on {self.iface} now runs program "
                                  f"{mine['prog_id']}, not ours ({self.prog_id})")
            try:
                ipr.tc("replace-filter", "bpf", self.ifindex, self.handle, fd=new_fd,
                       name=new_name or "nfpipe", parent=CLSACT_PARENT[self.direction],
                       prio=self.priority, direct_action=True)
            except NetlinkError as exc:
                raise self._error(f"cannot replace the tc filter's program on "
                                  f"{_where(self.iface, self.netns)}",
                                  netlink_error=_nl_reason(exc)) from None
        self.prog_id, self.prog_name = new_id, new_name


# --- XDP ----------------------------------------------------------------------------------


def _offload_refusal(ifindex: int) -> str | None:
    """Why the device *ifindex* (this thread's namespace) cannot take offloaded programs
    (probe's trial load bound to it); None if it accepts."""
    from nfpipe.attach.probe import offload_refusal
    why = offload_refusal(ifindex)
    return None if why is None else f"a program bound to the device does not load ({why})"


def attach_xdp(prog, ifname: str, *, mode: str = "native", netns=None, replace: bool = False,
               use_link: bool = True) -> Attachment:
    """Attach the XDP program *prog* (a Program or fd) to *ifname*.

    *mode*: "native" (driver), "generic" (skb), "offload" (the NIC runs it; the
    program must have been loaded for the device with ``ifindex=``), or "auto"
    (native, else generic: ``.mode`` and ``.attempts`` tell which stuck and why).
    A bpf_link is used unless *use_link* is False or the kernel has no XDP links;
    then netlink, refusing to replace an attached program unless *replace*.
    """
    if mode not in (*XDP_MODES, "auto"):
        raise AttachError(f"unknown XDP mode {mode!r} (use native, generic, offload or auto)",
                          iface=ifname, mode=mode)
    index = _ifindex(ifname, netns)
    fd = _prog_fd(prog)
    prog_id, prog_name, prog_type = _prog_desc(fd)
    if prog_type != abi.ProgType.XDP:
        raise AttachError(f"program '{prog_name}' is not an XDP program (type "
                          f"{_type_name(prog_type)}); it cannot attach to the XDP hook of "
                          f"{_where(ifname, netns)}", iface=ifname, mode=mode)
    with in_netns(netns):
        driver = netdev.driver_name(ifname) or "unknown"
    if mode == "offload":
        with in_netns(netns):
            refusal = _offload_refusal(index)
        if refusal:
            raise AttachError(f"driver '{driver}' of {_where(ifname, netns)} cannot offload "
                              f"XDP programs to hardware: {refusal}", iface=ifname, mode=mode)
        bound = sc.prog_info(fd).ifindex
        if bound != index:
            raise AttachError(f"program '{prog_name}' was not loaded for offload to "
                              f"{ifname!r}: load it with ifindex={index} (prog_ifindex)",
                              iface=ifname, mode=mode)
    modes = ["native", "generic"] if mode == "auto" else [mode]
    attempts: list[str] = []
    last: AttachError | None = None
    for m in modes:
        try:
            if use_link:
                att = _xdp_link(fd, ifname, index, netns, m, driver, replace)
            else:
                att = _xdp_netlink(fd, ifname, index, netns, m, driver, replace)
        except AttachError as exc:
            attempts.append(f"{m}: {exc}")
            last = exc
            if mode == "auto" and getattr(exc, "retry_other_mode", False):
                continue
            raise
        att.prog_id, att.prog_name = prog_id, prog_name
        att.attempts = attempts + att.attempts
        return att
    assert last is not None
    raise AttachError("no XDP mode could attach: " + "; ".join(attempts), iface=ifname,
                      mode=mode)


def _type_name(t: int) -> str:
    try:
        return abi.ProgType(t).name.lower()
    except ValueError:
        return str(t)


def _mode_error(errno_: int, ifname, netns, mode, driver, detail: str,
                netlink_error: str | None = None) -> AttachError:
    """An AttachError for a refused XDP attach; native-mode refusals may retry generic."""
    where = _where(ifname, netns)
    retry = False
    if errno_ in (_errno.EOPNOTSUPP, abi.ENOTSUPP) and mode == "native":
        msg = f"native XDP is not supported by driver '{driver}' of {where}"
        retry = True
    elif errno_ in (_errno.EOPNOTSUPP, abi.ENOTSUPP, _errno.EINVAL) and mode == "offload":
        msg = f"driver '{driver}' of {where} refused the offloaded XDP program"
    elif errno_ in (_errno.EEXIST, _errno.EBUSY):
        msg = f"{where} already has XDP attached: {detail}"
    elif errno_ == _errno.ERANGE:
        msg = (f"the MTU of {where} is too large for {mode} XDP on driver '{driver}' "
               f"(or the program lacks XDP frags support)")
        retry = mode == "native"
    else:
        msg = f"cannot attach XDP in {mode} mode to {where} (driver '{driver}'): {detail}"
        retry = mode == "native" and errno_ == _errno.EINVAL
    err = AttachError(msg, iface=ifname, mode=mode, netlink_error=netlink_error)
    err.errno = errno_
    err.retry_other_mode = retry
    return err


def _xdp_link(fd, ifname, index, netns, mode, driver, replace) -> Attachment:
    with in_netns(netns):
        try:
            lfd = sc.link_create(fd, index, abi.AttachType.XDP, flags=XDP_MODE_FLAGS[mode])
        except KernelError as exc:
            err = exc.errno
            if err == _errno.EINVAL and not _kernel_has_xdp_links():
                return _xdp_netlink(fd, ifname, index, netns, mode, driver, replace,
                                    why="this kernel has no XDP bpf_link")
            detail = str(exc)
            if err in (_errno.EEXIST, _errno.EBUSY):
                detail = _describe_xdp(ifname, netns, index)
                if replace and "via link" not in detail:
                    # a netlink-attached program: replace it the netlink way
                    return _xdp_netlink(fd, ifname, index, netns, mode, driver, True,
                                        why="replacing a program attached through netlink")
                if not replace:
                    detail += "; pass replace=True to replace a netlink attachment"
                else:
                    detail += "; a program held by another bpf_link cannot be replaced"
            elif err == _errno.EINVAL and mode == "native":
                detail = _native_einval_reason(ifname, netns, index) or detail
            raise _mode_error(err, ifname, netns, mode, driver, detail) from None
    return Link(lfd, kind="xdp", iface=ifname, ifindex=index, netns=netns, mode=mode,
                prog_id=0, prog_name="")


def _native_einval_reason(ifname, netns, index) -> str | None:
    with in_netns(netns), _ipr() as ipr:
        state = _xdp_state(ipr, index)
    if "generic" in state:
        return "a generic-mode XDP program is attached; native and generic cannot coexist"
    return None


def _xdp_netlink(fd, ifname, index, netns, mode, driver, replace, why: str = ""
                 ) -> Attachment:
    from pyroute2.netlink.exceptions import NetlinkError
    flags = XDP_MODE_FLAGS[mode] | (0 if replace else abi.XDP_FLAGS_UPDATE_IF_NOEXIST)
    with in_netns(netns), _ipr() as ipr:
        try:
            ipr.link("set", index=index, xdp={"attrs": [("IFLA_XDP_FD", fd),
                                                        ("IFLA_XDP_FLAGS", flags)]})
        except NetlinkError as exc:
            detail = _nl_reason(exc)
            if exc.code in (_errno.EEXIST, _errno.EBUSY):
                detail = f"{_describe_xdp(ifname, netns, index)} ({exc.args[-1]})"
            raise _mode_error(exc.code, ifname, netns, mode, driver, detail,
                              netlink_error=_nl_reason(exc)) from None
    att = NetlinkXdp(sc.Fd(os.dup(fd)), iface=ifname, ifindex=index, netns=netns, mode=mode,
                     prog_id=0, prog_name="")
    if why:
        att.attempts.append(f"netlink: {why}")
    return att


_XDP_LINKS: bool | None = None


def _kernel_has_xdp_links() -> bool:
    global _XDP_LINKS
    if _XDP_LINKS is None:
        from nfpipe.attach.probe import probe_link_support
        _XDP_LINKS = probe_link_support()["xdp_link"] is True
    return _XDP_LINKS


# --- TC -----------------------------------------------------------------------------------


def _has_clsact(ipr, index: int) -> bool:
    for q in ipr.get_qdiscs(index=index):
        if q.get_attr("TCA_KIND") in ("clsact", "ingress") and q["parent"] == TC_H_CLSACT:
            return True
    return False


def _qdisc_kind(ipr, index: int) -> str | None:
    for q in ipr.get_qdiscs(index=index):
        if q["parent"] == TC_H_CLSACT:
            return q.get_attr("TCA_KIND")
    return None


def _raw_nested(nla) -> dict[int, bytes]:
    """The attributes nested in a pyroute2 nla, by type, from its raw bytes (pyroute2's
    cls_bpf map stops at TCA_BPF_FLAGS; the kernel also sends TCA_BPF_TAG and _ID)."""
    data = bytes(nla.data[nla.offset:nla.offset + nla.length])
    out, pos = {}, 4
    while pos + 4 <= len(data):
        length, typ = struct.unpack_from("<HH", data, pos)
        if length < 4:
            break
        out[typ & 0x3FFF] = data[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return out


def _all_filters(ipr, index: int, direction: str) -> list:
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        return [f for f in ipr.get_filters(index=index, parent=CLSACT_PARENT[direction])
                if f.get_attr("TCA_KIND")]
    except NetlinkError:
        return []


def _cls_bpf_filters(ipr, index: int, direction: str) -> list[dict]:
    out = []
    for f in _all_filters(ipr, index, direction):
        opts = None
        for slot in f["attrs"]:
            if slot.name == "TCA_OPTIONS":
                opts = slot.cell[1]
        if opts is None:         # the per-priority header entry of the dump
            continue
        if f.get_attr("TCA_KIND") != "bpf":
            out.append({"via": "clsact", "kind": f.get_attr("TCA_KIND"),
                        "priority": f["info"] >> 16, "handle": f["handle"],
                        "prog_id": None, "prog_name": None})
            continue
        raw = _raw_nested(opts)
        prog_id = struct.unpack("<I", raw[TCA_BPF_ID][:4])[0] if TCA_BPF_ID in raw else None
        flags = struct.unpack("<I", raw[TCA_BPF_FLAGS][:4])[0] if TCA_BPF_FLAGS in raw else 0
        name = raw.get(TCA_BPF_NAME, b"").split(b"\0", 1)[0].decode(errors="replace")
        entry = {"via": "clsact", "kind": "bpf", "priority": f["info"] >> 16,
                 "handle": f["handle"], "chain": f.get_attr("TCA_CHAIN") or 0,
                 "direct_action": bool(flags & TCA_BPF_FLAG_ACT_DIRECT),
                 "filter_name": name, "prog_id": prog_id}
        if prog_id:
            s = prog_summary(prog_id)
            entry.update(prog_name=s.get("prog_name"), prog_tag=s.get("prog_tag"))
        out.append(entry)
    return out


def attach_tc(prog, ifname: str, direction: str = "ingress", *, netns=None,
              use: str = "auto", priority: int | None = None, handle: int = 1) -> Attachment:
    """Attach the SCHED_CLS program *prog* to the *direction* of *ifname*.

    *use*: "tcx" (a tcx bpf_link, Linux >= 6.6), "clsact" (a direct-action cls_bpf
    filter; the clsact qdisc is created only if absent), or "auto" (tcx, else
    clsact).  For clsact, *priority* defaults to the lowest one not taken.
    """
    if direction not in DIRECTIONS:
        raise AttachError(f"unknown tc direction {direction!r} (use ingress or egress)",
                          iface=ifname, mode=use)
    if use not in ("tcx", "clsact", "auto"):
        raise AttachError(f"unknown tc attach method {use!r} (use tcx, clsact or auto)",
                          iface=ifname, mode=use)
    index = _ifindex(ifname, netns)
    fd = _prog_fd(prog)
    prog_id, prog_name, prog_type = _prog_desc(fd)
    if prog_type not in (abi.ProgType.SCHED_CLS, abi.ProgType.SCHED_ACT):
        raise AttachError(f"program '{prog_name}' is not a tc (sched_cls) program (type "
                          f"{_type_name(prog_type)})", iface=ifname, mode=use)
    attempts = []
    if use in ("tcx", "auto"):
        try:
            with in_netns(netns):
                lfd = sc.link_create(fd, index, TCX_ATTACH[direction])
        except KernelError as exc:
            msg = (f"cannot attach a tcx {direction} link to {_where(ifname, netns)}: "
                   f"{exc}")
            if exc.errno == _errno.EINVAL:
                msg += " (tcx needs Linux 6.6 or newer)"
            if use == "tcx":
                raise AttachError(msg, iface=ifname, mode="tcx") from None
            attempts.append(f"tcx: {msg}")
        else:
            link = Link(lfd, kind="tc", iface=ifname, ifindex=index, netns=netns, mode="tcx",
                        prog_id=prog_id, prog_name=prog_name, direction=direction)
            return link
    att = _attach_clsact(fd, ifname, index, netns, direction, prog_id, prog_name, priority,
                         handle)
    att.attempts = attempts
    return att


def _attach_clsact(fd, ifname, index, netns, direction, prog_id, prog_name, priority,
                   handle) -> ClsactFilter:
    from pyroute2.netlink.exceptions import NetlinkError
    created = False
    with in_netns(netns), _ipr() as ipr:
        kind = _qdisc_kind(ipr, index)
        if kind == "ingress" and direction == "egress":
            raise AttachError(f"{_where(ifname, netns)} has an 'ingress' qdisc, which has no "
                              f"egress hook; replace it with clsact to attach egress",
                              iface=ifname, mode="clsact")
        if kind is None:
            try:
                ipr.tc("add", "clsact", index)
                created = True
            except NetlinkError as exc:
                raise AttachError(f"cannot add a clsact qdisc to {_where(ifname, netns)}",
                                  iface=ifname, mode="clsact",
                                  netlink_error=_nl_reason(exc)) from None
        try:
            taken = {f["priority"] for f in _cls_bpf_filters(ipr, index, direction)}
            prio = priority if priority is not None else next(
                p for p in range(1, 0xFFFF) if p not in taken)
            try:
                ipr.tc("add-filter", "bpf", index, handle, fd=fd, name=prog_name or "nfpipe",
                       parent=CLSACT_PARENT[direction], prio=prio, direct_action=True)
            except NetlinkError as exc:
                extra = ""
                if exc.code == _errno.EEXIST:
                    extra = f": priority {prio} handle {handle:#x} is taken"
                raise AttachError(f"cannot add a cls_bpf {direction} filter to "
                                  f"{_where(ifname, netns)}{extra}", iface=ifname,
                                  mode="clsact", netlink_error=_nl_reason(exc)) from None
        except BaseException:
            if created:
                try:
                    ipr.tc("del", "clsact", index)
                except NetlinkError:
                    pass
            raise
    return ClsactFilter(priority=prio, handle=handle, created_qdisc=created, iface=ifname,
                        ifindex=index, netns=netns, mode="clsact", prog_id=prog_id,
                        prog_name=prog_name, direction=direction)


# --- records: an attachment without a link, found again by another process -----------------

def attachment_record(att: Attachment) -> dict:
    """What a later process needs to find *att* again (for netlink XDP and clsact, which
    have no bpf_link to pin): JSON-able."""
    rec = {"via": att.via, "kind": att.kind, "iface": att.iface, "ifindex": att.ifindex,
           "netns": None if att.netns is None else os.fspath(att.netns), "mode": att.mode,
           "direction": att.direction, "prog_id": att.prog_id}
    if isinstance(att, ClsactFilter):
        rec.update(priority=att.priority, handle=att.handle, created_qdisc=att.created_qdisc)
    return rec


def attachment_from_record(rec: dict, prog_id: int | None = None) -> Attachment:
    """The attachment *rec* describes, expected to run *prog_id* now (default: the
    recorded one).  Detach and update check that expectation in the kernel."""
    pid = prog_id if prog_id is not None else rec["prog_id"]
    common = dict(iface=rec["iface"], ifindex=rec["ifindex"], netns=rec["netns"],
                  mode=rec["mode"], prog_id=pid, prog_name="", direction=rec["direction"])
    if rec["via"] == "clsact":
        return ClsactFilter(priority=rec["priority"], handle=rec["handle"],
                            created_qdisc=rec["created_qdisc"], **common)
    if rec["via"] == "netlink":
        return NetlinkXdp(sc.prog_get_fd_by_id(pid), **common)
    raise AttachError(f"no way to rebuild a {rec['via']} attachment from a record; links "
                      f"are opened from their pin", iface=rec["iface"])


# --- query / update / detach ----------------------------------------------------------------


def query(ifname: str, netns=None) -> dict:
    """What is attached to *ifname* now, whoever attached it.

    ``{"iface", "ifindex", "netns", "xdp": [{mode, prog_id, prog_name, prog_tag,
    via: "link"|"netlink", link_id}], "tc": {"ingress": [...], "egress": [...]},
    "qdisc": "clsact"|"ingress"|None}`` — tc entries are tcx programs in run order
    (``via: "tcx"``, ``link_id`` or None for a tcx attach without a link) then
    clsact filters by priority (``via: "clsact"``, priority, handle, direct_action).
    """
    index = _ifindex(ifname, netns)
    out: dict[str, Any] = {"iface": ifname, "ifindex": index,
                           "netns": None if netns is None else os.fspath(netns),
                           "xdp": [], "tc": {"ingress": [], "egress": []}}
    with in_netns(netns), _ipr() as ipr:
        state = _xdp_state(ipr, index)
        out["qdisc"] = _qdisc_kind(ipr, index)
        for d in DIRECTIONS:
            try:
                res = sc.prog_query(index, TCX_ATTACH[d])
            except KernelError:
                res = None
            if res is not None:
                for i, pid in enumerate(res.prog_ids):
                    e = {"via": "tcx", **prog_summary(pid),
                         "link_id": (res.link_ids[i] or None) if i < len(res.link_ids)
                         else None}
                    out["tc"][d].append(e)
            if out["qdisc"] is not None:
                out["tc"][d].extend(_cls_bpf_filters(ipr, index, d))
    if any(m in state for m in XDP_MODES):
        links = _xdp_links_by_ifindex(index)
        for m in XDP_MODES:
            if m in state:
                pid = state[m]
                out["xdp"].append({"mode": m, **prog_summary(pid),
                                   "via": "link" if pid in links else "netlink",
                                   "link_id": links.get(pid)})
    return out


def update(attachment: Attachment, new_prog, *, check_old: bool = True) -> None:
    """Atomically swap the program of *attachment* (BPF_LINK_UPDATE with the old program
    checked, or netlink XDP_FLAGS_REPLACE with the expected fd, or a cls_bpf replace)."""
    attachment.update(new_prog, check_old=check_old)


def detach(attachment: Attachment) -> None:
    attachment.detach()
