"""Attaching XDP programs: a bpf_link (``Link``) when the kernel has XDP links, else
rtnetlink (``NetlinkXdp``), in native, generic or offload mode, or "auto" (native,
else generic), with the kernel's refusal turned into an ``AttachError`` that says
why."""
from __future__ import annotations

import errno as _errno
import os

from nfpipe.attach import netdev
from nfpipe.attach.base import Attachment, prog_desc, prog_fd, type_name
from nfpipe.attach.features import offload_refusal, probe_link_support
from nfpipe.attach.link import Link
from nfpipe.attach.query import (
    XDP_MODE_FLAGS,
    XDP_MODES,
    describe_xdp,
    iproute,
    netlink_error,
    nl_reason,
    where,
    xdp_state,
)
from nfpipe.errors import AttachError, KernelError
from nfpipe.kernel import abi, syscall as sc
from nfpipe.kernel.netns import ifindex as _ifindex, in_netns


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
        with in_netns(self.netns), iproute() as ipr:
            ipr.link("set", index=self.ifindex, xdp={"attrs": attrs})

    def detach(self) -> None:
        """Remove our program (only if it is still the one attached in our mode)."""
        if self.detached:
            return
        try:
            self._set(-1, XDP_MODE_FLAGS[self.mode] | abi.XDP_FLAGS_REPLACE, int(self._prog))
        except netlink_error() as exc:
            if exc.code == _errno.EEXIST:       # "Active program does not match expected"
                raise self._error(
                    f"not detaching XDP from {where(self.iface, self.netns)}: our program "
                    f"{self.prog_id} is no longer the one attached "
                    f"({describe_xdp(self.netns, self.ifindex)})",
                    netlink_error=nl_reason(exc)) from None
            raise self._error(f"cannot detach XDP from {where(self.iface, self.netns)}",
                              netlink_error=nl_reason(exc)) from None
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
        new_fd = prog_fd(new_prog)
        new_id, new_name, _ = prog_desc(new_fd)
        flags = XDP_MODE_FLAGS[self.mode]
        expected = None
        if check_old:
            flags |= abi.XDP_FLAGS_REPLACE
            expected = int(self._prog)
        try:
            self._set(new_fd, flags, expected)
        except netlink_error() as exc:
            raise self._error(f"cannot replace the XDP program on "
                              f"{where(self.iface, self.netns)}",
                              netlink_error=nl_reason(exc)) from None
        self._prog.close()
        self._prog = sc.Fd(os.dup(new_fd))
        self.prog_id, self.prog_name = new_id, new_name


def _offload_refusal(ifindex: int) -> str | None:
    """Why the device *ifindex* (this thread's namespace) cannot take offloaded programs
    (probe's trial load bound to it); None if it accepts."""
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
    fd = prog_fd(prog)
    prog_id, prog_name, prog_type = prog_desc(fd)
    if prog_type != abi.ProgType.XDP:
        raise AttachError(f"program '{prog_name}' is not an XDP program (type "
                          f"{type_name(prog_type)}); it cannot attach to the XDP hook of "
                          f"{where(ifname, netns)}", iface=ifname, mode=mode)
    with in_netns(netns):
        driver = netdev.driver_name(ifname) or "unknown"
    if mode == "offload":
        with in_netns(netns):
            refusal = _offload_refusal(index)
        if refusal:
            raise AttachError(f"driver '{driver}' of {where(ifname, netns)} cannot offload "
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


def _mode_error(errno_: int, ifname, netns, mode, driver, detail: str,
                netlink_error: str | None = None) -> AttachError:
    """An AttachError for a refused XDP attach; native-mode refusals may retry generic."""
    place = where(ifname, netns)
    retry = False
    if errno_ in (_errno.EOPNOTSUPP, abi.ENOTSUPP) and mode == "native":
        msg = f"native XDP is not supported by driver '{driver}' of {place}"
        retry = True
    elif errno_ in (_errno.EOPNOTSUPP, abi.ENOTSUPP, _errno.EINVAL) and mode == "offload":
        msg = f"driver '{driver}' of {place} refused the offloaded XDP program"
    elif errno_ in (_errno.EEXIST, _errno.EBUSY):
        msg = f"{place} already has XDP attached: {detail}"
    elif errno_ == _errno.ERANGE:
        msg = (f"the MTU of {place} is too large for {mode} XDP on driver '{driver}' "
               f"(or the program lacks XDP frags support)")
        retry = mode == "native"
    else:
        msg = f"cannot attach XDP in {mode} mode to {place} (driver '{driver}'): {detail}"
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
                detail = describe_xdp(netns, index)
                if replace and "via link" not in detail:
                    # a netlink-attached program: replace it the netlink way
                    return _xdp_netlink(fd, ifname, index, netns, mode, driver, True,
                                        why="replacing a program attached through netlink")
                if "via link" in detail:
                    detail += ("; a program held by a bpf_link is replaced only through "
                               "that link (or after its owner detaches it)")
                else:
                    detail += ("; attach_xdp(..., replace=True) replaces a program "
                               "attached through netlink")
            elif err == _errno.EINVAL and mode == "native":
                detail = _native_einval_reason(netns, index) or detail
            raise _mode_error(err, ifname, netns, mode, driver, detail) from None
    return Link(lfd, kind="xdp", iface=ifname, ifindex=index, netns=netns, mode=mode,
                prog_id=0, prog_name="")


def _native_einval_reason(netns, index) -> str | None:
    with in_netns(netns), iproute() as ipr:
        state = xdp_state(ipr, index)
    if "generic" in state:
        return "a generic-mode XDP program is attached; native and generic cannot coexist"
    return None


def _xdp_netlink(fd, ifname, index, netns, mode, driver, replace, why: str = ""
                 ) -> Attachment:
    flags = XDP_MODE_FLAGS[mode] | (0 if replace else abi.XDP_FLAGS_UPDATE_IF_NOEXIST)
    with in_netns(netns), iproute() as ipr:
        try:
            ipr.link("set", index=index, xdp={"attrs": [("IFLA_XDP_FD", fd),
                                                        ("IFLA_XDP_FLAGS", flags)]})
        except netlink_error() as exc:
            detail = nl_reason(exc)
            if exc.code in (_errno.EEXIST, _errno.EBUSY):
                detail = f"{describe_xdp(netns, index)} ({exc.args[-1]})"
            raise _mode_error(exc.code, ifname, netns, mode, driver, detail,
                              netlink_error=nl_reason(exc)) from None
    att = NetlinkXdp(sc.Fd(os.dup(fd)), iface=ifname, ifindex=index, netns=netns, mode=mode,
                     prog_id=0, prog_name="")
    if why:
        att.attempts.append(f"netlink: {why}")
    return att


_XDP_LINKS: bool | None = None


def _kernel_has_xdp_links() -> bool:
    global _XDP_LINKS
    if _XDP_LINKS is None:
        _XDP_LINKS = probe_link_support()["xdp_link"] is True
    return _XDP_LINKS
