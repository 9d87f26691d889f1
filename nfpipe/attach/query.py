"""What is attached to an interface, read from the kernel (netlink and bpf()), whoever
attached it: ``query``, and the readers the attach code shares (IFLA_XDP state, XDP
links by ifindex, clsact qdiscs, cls_bpf filters with their program ids)."""
from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

from nfpipe.errors import KernelError, errno_name
from nfpipe.kernel import abi, syscall as sc
from nfpipe.kernel.netns import ifindex as _ifindex, in_netns

if TYPE_CHECKING:
    from pyroute2 import IPRoute

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


def where(iface: str, netns) -> str:
    return f"{iface!r}" + (f" (netns {os.fspath(netns)!r})" if netns is not None else "")


def iproute() -> IPRoute:
    """An rtnetlink socket (in this thread's namespace) that reports extack messages."""
    from pyroute2 import IPRoute

    return IPRoute(ext_ack=True)


def netlink_error() -> type[Exception]:
    """pyroute2's NetlinkError, for ``except netlink_error():`` (evaluated only when
    something was raised).  pyroute2 is imported where it is used: it takes ~110 ms,
    and the commands that only read and write maps (``nfpipe rules``, ``stats``,
    ``map``) never open a netlink socket."""
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


def nl_reason(exc) -> str:
    """The text of a pyroute2 NetlinkError: the kernel's extack message when it sent one."""
    args = getattr(exc, "args", ())
    text = args[1] if len(args) > 1 and args[1] else os.strerror(getattr(exc, "code", 0) or 0)
    return f"{text} ({errno_name(getattr(exc, 'code', 0) or 0)})"


def xdp_state(ipr, index: int) -> dict:
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


def xdp_links_by_ifindex(index: int) -> dict[int, int]:
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


def describe_xdp(netns, index: int) -> str:
    """What is attached to the XDP hook of interface *index* in *netns*, in words."""
    with in_netns(netns), iproute() as ipr:
        state = xdp_state(ipr, index)
    found = [(m, state[m]) for m in XDP_MODES if m in state]
    if not found:
        return "nothing is attached"
    links = xdp_links_by_ifindex(index)
    parts = []
    for mode, pid in found:
        s = prog_summary(pid)
        via = f"link {links[pid]}" if pid in links else "netlink"
        parts.append(f"program {pid} '{s.get('prog_name')}' in {mode} mode via {via}")
    return "; ".join(parts)


def has_clsact(ipr, index: int) -> bool:
    for q in ipr.get_qdiscs(index=index):
        if q.get_attr("TCA_KIND") in ("clsact", "ingress") and q["parent"] == TC_H_CLSACT:
            return True
    return False


def qdisc_kind(ipr, index: int) -> str | None:
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


def all_filters(ipr, index: int, direction: str) -> list:
    try:
        return [f for f in ipr.get_filters(index=index, parent=CLSACT_PARENT[direction])
                if f.get_attr("TCA_KIND")]
    except netlink_error():
        return []


def cls_bpf_filters(ipr, index: int, direction: str) -> list[dict]:
    out = []
    for f in all_filters(ipr, index, direction):
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
    with in_netns(netns), iproute() as ipr:
        state = xdp_state(ipr, index)
        out["qdisc"] = qdisc_kind(ipr, index)
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
                out["tc"][d].extend(cls_bpf_filters(ipr, index, d))
    if any(m in state for m in XDP_MODES):
        links = xdp_links_by_ifindex(index)
        for m in XDP_MODES:
            if m in state:
                pid = state[m]
                out["xdp"].append({"mode": m, **prog_summary(pid),
                                   "via": "link" if pid in links else "netlink",
                                   "link_id": links.get(pid)})
    return out
