"""What an interface can do for nfpipe, found by trying; with the kernel's side
(``nfpipe.attach.features``) this is ``nfpipe probe``.

``probe_interface``: the driver (ethtool), the XDP feature bits the kernel reports
(``netdev`` generic netlink), whether native XDP attaches (a trial link with a
pass program, made only when nothing is attached: an existing attachment is
reported and never touched), whether the device accepts offloaded programs (a
trial load bound to its ifindex), and what is attached now.  ``probe`` adds the
driver's profile (``offload/profiles``) and says where the live probe disagrees
with it; the probe wins.
"""
from __future__ import annotations

import os
from typing import Any

from nfpipe import profiles
from nfpipe.attach import netdev
from nfpipe.attach.features import offload_refusal, probe_kernel, try_native
from nfpipe.attach.query import query
from nfpipe.errors import KernelError
from nfpipe.kernel.netns import ifindex, in_netns

# --- interfaces --------------------------------------------------------------------------


def probe_interface(ifname: str, netns=None, *, trial: bool = True) -> dict[str, Any]:
    """Driver, XDP features, native/offload trials and current attachments of *ifname*.

    The native trial attaches a pass program with a link and closes it at once, and
    only when nothing is attached to the XDP hook (otherwise a program attached in
    native mode, or the driver's xdp-features, answer); *trial* False skips both
    trials.  ``native_xdp_how`` says how a True was found.
    """
    index = ifindex(ifname, netns)
    out: dict[str, Any] = {"iface": ifname, "ifindex": index,
                           "netns": None if netns is None else os.fspath(netns)}
    attached = query(ifname, netns)
    with in_netns(netns):
        info = netdev.driver_info(ifname)
        out["driver"] = info.driver if info else netdev.driver_name(ifname)
        if info is not None:
            out["driver_version"], out["bus_info"] = info.version, info.bus_info
            out["firmware"] = info.firmware
        try:
            feats = netdev.xdp_features(index)
            out["xdp"] = {"source": "netdev genetlink", **feats.to_dict()}
        except KernelError as exc:
            out["xdp"] = {"source": None, "error": str(exc)}
        if not trial:
            out["native_xdp"] = "not tried"
            out["offload"] = "not tried"
        elif attached["xdp"]:
            # no trial on an occupied hook; what is there, or what the driver says, tells
            a = attached["xdp"][0]
            busy = f"program {a['prog_id']} '{a['prog_name']}' is attached in {a['mode']} mode"
            if a["mode"] == "native":
                out["native_xdp"], out["native_xdp_how"] = True, busy
            elif "basic" in out["xdp"].get("xdp_features", ()):
                out["native_xdp"] = True
                out["native_xdp_how"] = f"the driver advertises XDP (xdp-features: basic); {busy}"
            else:
                out["native_xdp"] = f"not tried: {busy}"
        else:
            out["native_xdp"] = try_native(index)
            if out["native_xdp"] is True:
                out["native_xdp_how"] = "trial attach worked"
        if trial:
            out["offload"] = _try_offload(index)
    out["attached"] = {"xdp": attached["xdp"], "tc": attached["tc"],
                       "qdisc": attached["qdisc"]}
    return out


def _try_offload(index: int) -> Any:
    why = offload_refusal(index)
    return True if why is None else f"no (a program bound to the device does not load: {why})"


def probe(ifname: str | None = None, netns=None, *, kernel: bool = True,
          trial: bool = True) -> dict[str, Any]:
    """The kernel's capabilities and, if *ifname* is given, the interface's, with the
    driver's profile and every point where the live probe contradicts it."""
    out: dict[str, Any] = {}
    if kernel:
        out["kernel"] = probe_kernel()
    if ifname is not None:
        iface = probe_interface(ifname, netns, trial=trial)
        prof = profiles.load_profile(iface.get("driver")) if iface.get("driver") else None
        iface["profile"] = prof.name if prof else None
        iface["profile_disagreements"] = profiles.compare(prof, iface) if prof else []
        out["interface"] = iface
    return out
