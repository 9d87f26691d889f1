"""What an interface is: its driver (ethtool) and its XDP features (the ``netdev``
generic-netlink family).

Both calls run in the caller's network namespace (see ``nfpipe.kernel.netns``):
the ethtool ioctl goes through a socket made there, and the generic-netlink
socket is bound there, so an ifindex means the interface of that namespace.

Facts used (UAPI ``linux/ethtool.h``, ``linux/sockios.h``, ``linux/netdev.h``,
generated from ``Documentation/netlink/specs/netdev.yaml``):

* ``SIOCETHTOOL`` = 0x8946 with ``struct ifreq.ifr_data`` pointing to a
  ``struct ethtool_drvinfo`` whose ``cmd`` is ``ETHTOOL_GDRVINFO`` (3);
* family "netdev", version 1, ``NETDEV_CMD_DEV_GET`` = 1 with attribute
  ``NETDEV_A_DEV_IFINDEX`` (1); the reply carries ``NETDEV_A_DEV_XDP_FEATURES``
  (3, u64 of ``enum netdev_xdp_act``), ``NETDEV_A_DEV_XDP_ZC_MAX_SEGS`` (4,
  u32), ``NETDEV_A_DEV_XDP_RX_METADATA_FEATURES`` (5, u64) and
  ``NETDEV_A_DEV_XSK_FEATURES`` (6, u64).
"""
from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass, field

from nfpipe.errors import KernelError
from nfpipe.kernel.netns import current_netns

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003

#: enum netdev_xdp_act, as the netdev family's spec names the bits
XDP_FEATURE_BITS = {
    "basic": 1, "redirect": 2, "ndo-xmit": 4, "xsk-zerocopy": 8, "hw-offload": 16,
    "rx-sg": 32, "ndo-xmit-sg": 64,
}
#: enum netdev_xdp_rx_metadata
XDP_RX_METADATA_BITS = {"timestamp": 1, "hash": 2, "vlan-tag": 4}
#: enum netdev_xsk_flags
XSK_FEATURE_BITS = {"tx-timestamp": 1, "tx-checksum": 2, "tx-launch-time-fifo": 4}

NETDEV_FAMILY = "netdev"
NETDEV_CMD_DEV_GET = 1


class _DrvInfo(ctypes.Structure):
    """``struct ethtool_drvinfo``."""

    _fields_ = [("cmd", ctypes.c_uint32), ("driver", ctypes.c_char * 32),
                ("version", ctypes.c_char * 32), ("fw_version", ctypes.c_char * 32),
                ("bus_info", ctypes.c_char * 32), ("erom_version", ctypes.c_char * 32),
                ("reserved2", ctypes.c_char * 12), ("n_priv_flags", ctypes.c_uint32),
                ("n_stats", ctypes.c_uint32), ("testinfo_len", ctypes.c_uint32),
                ("eedump_len", ctypes.c_uint32), ("regdump_len", ctypes.c_uint32)]


@dataclass(frozen=True)
class DriverInfo:
    driver: str
    version: str
    bus_info: str
    firmware: str


def driver_info(ifname: str) -> DriverInfo | None:
    """ETHTOOL_GDRVINFO for *ifname* in this thread's namespace; None if the device
    does not answer ethtool (some virtual devices) or does not exist."""
    info = _DrvInfo(cmd=ETHTOOL_GDRVINFO)
    ifr = bytearray(40)                         # struct ifreq: name[16] + union (24)
    name = ifname.encode()[:15]
    ifr[:len(name)] = name
    struct.pack_into("P", ifr, 16, ctypes.addressof(info))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
        except OSError:
            return None
    return DriverInfo(driver=info.driver.decode(errors="replace"),
                      version=info.version.decode(errors="replace"),
                      bus_info=info.bus_info.decode(errors="replace"),
                      firmware=info.fw_version.decode(errors="replace"))


def driver_name(ifname: str) -> str | None:
    """The driver of *ifname* (ethtool; else the sysfs driver link), None if unknown."""
    info = driver_info(ifname)
    if info is not None and info.driver:
        return info.driver
    if current_netns() is not None:
        return None        # sysfs shows the namespace it was mounted in, not this one
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{ifname}/device/driver"))
    except OSError:
        return None


def bits_to_names(value: int, table: dict[str, int]) -> list[str]:
    names = [n for n, b in table.items() if value & b]
    rest = value & ~sum(table.values())
    if rest:
        names.append(f"unknown({rest:#x})")
    return names


@dataclass(frozen=True)
class XdpFeatures:
    """One device's answer to NETDEV_CMD_DEV_GET."""

    ifindex: int
    xdp_features: int
    xdp_zc_max_segs: int | None = None
    xdp_rx_metadata: int | None = None
    xsk_features: int | None = None
    names: list[str] = field(default_factory=list)

    def has(self, name: str) -> bool:
        return bool(self.xdp_features & XDP_FEATURE_BITS[name])

    def to_dict(self) -> dict:
        out = {"xdp_features": self.names, "xdp_features_raw": self.xdp_features,
               "xdp_zc_max_segs": self.xdp_zc_max_segs}
        if self.xdp_rx_metadata is not None:
            out["xdp_rx_metadata"] = bits_to_names(self.xdp_rx_metadata, XDP_RX_METADATA_BITS)
        if self.xsk_features is not None:
            out["xsk_features"] = bits_to_names(self.xsk_features, XSK_FEATURE_BITS)
        return out


def _netdev_msg_class():
    from pyroute2.netlink import genlmsg

    class netdevmsg(genlmsg):
        prefix = "NETDEV_A_DEV_"
        nla_map = (
            ("NETDEV_A_DEV_UNSPEC", "none"),
            ("NETDEV_A_DEV_IFINDEX", "uint32"),
            ("NETDEV_A_DEV_PAD", "none"),
            ("NETDEV_A_DEV_XDP_FEATURES", "uint64"),
            ("NETDEV_A_DEV_XDP_ZC_MAX_SEGS", "uint32"),
            ("NETDEV_A_DEV_XDP_RX_METADATA_FEATURES", "uint64"),
            ("NETDEV_A_DEV_XSK_FEATURES", "uint64"),
        )

    return netdevmsg


def xdp_features(ifindex: int) -> XdpFeatures:
    """The kernel's XDP feature bits of device *ifindex* (this thread's namespace).

    ``KernelError`` (op "netdev genetlink") if the family is missing (kernels
    before 6.3) or the device is unknown.
    """
    from pyroute2.netlink import NLM_F_REQUEST
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.generic import GenericNetlinkSocket

    msg_class = _netdev_msg_class()
    sock = GenericNetlinkSocket()
    try:
        try:
            sock.bind(NETDEV_FAMILY, msg_class)
        except NetlinkError as exc:
            raise KernelError("netdev genetlink", exc.code or _errno.ENOENT,
                              "the kernel has no 'netdev' generic-netlink family",
                              hint="XDP feature reporting needs Linux 6.3 or newer") from None
        req = msg_class()
        req["cmd"] = NETDEV_CMD_DEV_GET
        req["version"] = 1
        req["attrs"].append(("NETDEV_A_DEV_IFINDEX", ifindex))
        try:
            replies = list(sock.nlm_request(req, msg_type=sock.prid, msg_flags=NLM_F_REQUEST))
        except NetlinkError as exc:
            raise KernelError("netdev genetlink", exc.code or _errno.EIO,
                              f"NETDEV_CMD_DEV_GET ifindex {ifindex}: {exc.args[-1]}") from None
    finally:
        sock.close()
    if not replies:
        raise KernelError("netdev genetlink", _errno.EIO, "no reply to NETDEV_CMD_DEV_GET")
    r = replies[0]
    feats = r.get_attr("NETDEV_A_DEV_XDP_FEATURES") or 0
    return XdpFeatures(ifindex=ifindex, xdp_features=feats,
                       xdp_zc_max_segs=r.get_attr("NETDEV_A_DEV_XDP_ZC_MAX_SEGS"),
                       xdp_rx_metadata=r.get_attr("NETDEV_A_DEV_XDP_RX_METADATA_FEATURES"),
                       xsk_features=r.get_attr("NETDEV_A_DEV_XSK_FEATURES"),
                       names=bits_to_names(feats, XDP_FEATURE_BITS))
