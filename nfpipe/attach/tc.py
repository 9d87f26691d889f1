"""Attaching TC programs: a tcx bpf_link (``Link``, Linux 6.6+), or a direct-action
cls_bpf filter under a clsact qdisc (``ClsactFilter``), which removes the qdisc
on detach only if it created it and no filter is left."""
from __future__ import annotations

import errno as _errno

from nfpipe.attach.base import Attachment, prog_desc, prog_fd, type_name
from nfpipe.attach.link import Link
from nfpipe.attach.query import (
    CLSACT_PARENT,
    DIRECTIONS,
    TCX_ATTACH,
    all_filters,
    cls_bpf_filters,
    has_clsact,
    iproute,
    netlink_error,
    nl_reason,
    qdisc_kind,
    where,
)
from nfpipe.errors import AttachError, KernelError
from nfpipe.faults import fault
from nfpipe.kernel import abi, syscall as sc
from nfpipe.kernel.netns import ifindex as _ifindex, in_netns


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
        for f in cls_bpf_filters(ipr, self.ifindex, self.direction):
            if f["priority"] == self.priority and f["handle"] == self.handle:
                return f
        return None

    def detach(self) -> None:
        if self.detached:
            return
        with in_netns(self.netns), iproute() as ipr:
            mine = self._ours(ipr)
            if mine is not None and mine["prog_id"] != self.prog_id:
                raise self._error(
                    f"not deleting the tc filter prio {self.priority} handle {self.handle:#x} "
                    f"on {where(self.iface, self.netns)}: it now runs program "
                    f"{mine['prog_id']} '{mine['prog_name']}', not ours ({self.prog_id})")
            if mine is not None:
                try:
                    ipr.tc("del-filter", "bpf", self.ifindex, self.handle,
                           parent=CLSACT_PARENT[self.direction], prio=self.priority)
                except netlink_error() as exc:
                    raise self._error(f"cannot delete the tc filter on "
                                      f"{where(self.iface, self.netns)}",
                                      netlink_error=nl_reason(exc)) from None
            self.detached = True
            if self.created_qdisc and has_clsact(ipr, self.ifindex):
                left = [f for d in DIRECTIONS for f in all_filters(ipr, self.ifindex, d)]
                if not left:
                    try:
                        ipr.tc("del", "clsact", self.ifindex)
                    except netlink_error() as exc:
                        if exc.code not in (_errno.ENOENT, _errno.EINVAL):
                            raise self._error("cannot remove the clsact qdisc we created on "
                                              f"{where(self.iface, self.netns)}",
                                              netlink_error=nl_reason(exc)) from None
                self.created_qdisc = False

    def update(self, new_prog, *, check_old: bool = True) -> None:
        """Replace the filter's program (cls_bpf swaps it in one change)."""
        new_fd = prog_fd(new_prog)
        new_id, new_name, _ = prog_desc(new_fd)
        with in_netns(self.netns), iproute() as ipr:
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
            except netlink_error() as exc:
                raise self._error(f"cannot replace the tc filter's program on "
                                  f"{where(self.iface, self.netns)}",
                                  netlink_error=nl_reason(exc)) from None
        self.prog_id, self.prog_name = new_id, new_name


def attach_tc(prog, ifname: str, direction: str = "ingress", *, netns=None,
              use: str = "auto", priority: int | None = None, handle: int = 1,
              first: bool = False) -> Attachment:
    """Attach the SCHED_CLS program *prog* to the *direction* of *ifname*.

    *use*: "tcx" (a tcx bpf_link, Linux >= 6.6), "clsact" (a direct-action cls_bpf
    filter; the clsact qdisc is created only if absent), or "auto" (tcx, else
    clsact).  For clsact, *priority* defaults to the lowest one not taken.  *first*:
    run before the programs already there (tcx: at the front, BPF_F_BEFORE; clsact:
    a priority below theirs) — the first verdict other than "next" (TC_ACT_UNSPEC)
    ends the chain, so a program behind one that passes everything sees nothing.
    """
    if direction not in DIRECTIONS:
        raise AttachError(f"unknown tc direction {direction!r} (use ingress or egress)",
                          iface=ifname, mode=use)
    if use not in ("tcx", "clsact", "auto"):
        raise AttachError(f"unknown tc attach method {use!r} (use tcx, clsact or auto)",
                          iface=ifname, mode=use)
    index = _ifindex(ifname, netns)
    fd = prog_fd(prog)
    prog_id, prog_name, prog_type = prog_desc(fd)
    if prog_type not in (abi.ProgType.SCHED_CLS, abi.ProgType.SCHED_ACT):
        raise AttachError(f"program '{prog_name}' is not a tc (sched_cls) program (type "
                          f"{type_name(prog_type)})", iface=ifname, mode=use)
    attempts = []
    if use in ("tcx", "auto"):
        try:
            with in_netns(netns):
                lfd = sc.link_create(fd, index, TCX_ATTACH[direction],
                                     flags=abi.BPF_F_BEFORE if first else 0)
        except KernelError as exc:
            msg = (f"cannot attach a tcx {direction} link to {where(ifname, netns)}: "
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
                         handle, first)
    att.attempts = attempts
    return att


def _attach_clsact(fd, ifname, index, netns, direction, prog_id, prog_name, priority,
                   handle, first: bool = False) -> ClsactFilter:
    created = False
    with in_netns(netns), iproute() as ipr:
        kind = qdisc_kind(ipr, index)
        if kind == "ingress" and direction == "egress":
            raise AttachError(f"{where(ifname, netns)} has an 'ingress' qdisc, which has no "
                              f"egress hook; replace it with clsact to attach egress",
                              iface=ifname, mode="clsact")
        if kind is None:
            try:
                ipr.tc("add", "clsact", index)
                created = True
                fault("clsact-qdisc")          # the tests' kill between qdisc and filter
            except netlink_error() as exc:
                raise AttachError(f"cannot add a clsact qdisc to {where(ifname, netns)}",
                                  iface=ifname, mode="clsact",
                                  netlink_error=nl_reason(exc)) from None
        try:
            taken = {f["priority"] for f in cls_bpf_filters(ipr, index, direction)}
            if priority is None and first and taken:
                if min(taken) <= 1:
                    raise AttachError(
                        f"cannot run before the cls_bpf filter at priority 1 of "
                        f"{where(ifname, netns)} (no priority is lower); delete it, or use "
                        f"tcx, which runs before clsact", iface=ifname, mode="clsact")
                priority = min(taken) - 1
            prio = priority if priority is not None else next(
                p for p in range(1, 0xFFFF) if p not in taken)
            try:
                ipr.tc("add-filter", "bpf", index, handle, fd=fd, name=prog_name or "nfpipe",
                       parent=CLSACT_PARENT[direction], prio=prio, direct_action=True)
            except netlink_error() as exc:
                extra = ""
                if exc.code == _errno.EEXIST:
                    extra = f": priority {prio} handle {handle:#x} is taken"
                raise AttachError(f"cannot add a cls_bpf {direction} filter to "
                                  f"{where(ifname, netns)}{extra}", iface=ifname,
                                  mode="clsact", netlink_error=nl_reason(exc)) from None
        except BaseException:
            if created:
                try:
                    ipr.tc("del", "clsact", index)
                except netlink_error():
                    pass
            raise
    return ClsactFilter(priority=prio, handle=handle, created_qdisc=created, iface=ifname,
                        ifindex=index, netns=netns, mode="clsact", prog_id=prog_id,
                        prog_name=prog_name, direction=direction)


def remove_empty_clsact(ifname: str, netns=None) -> bool:
    """Delete the clsact qdisc of *ifname* if no filter is left under it; whether it did.
    For undoing a qdisc nfpipe created (a repair after a kill): one with a filter of
    anyone's is left alone."""
    index = _ifindex(ifname, netns)
    with in_netns(netns), iproute() as ipr:
        if qdisc_kind(ipr, index) != "clsact":
            return False
        if any(all_filters(ipr, index, d) for d in DIRECTIONS):
            return False
        try:
            ipr.tc("del", "clsact", index)
        except netlink_error() as exc:
            if exc.code in (_errno.ENOENT, _errno.EINVAL):
                return False
            raise AttachError(f"cannot remove the clsact qdisc of {where(ifname, netns)}",
                              iface=ifname, mode="clsact",
                              netlink_error=nl_reason(exc)) from None
    return True
