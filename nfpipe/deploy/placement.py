"""Placement: which attach mode each interface gets, and why, one line per decision.

XDP, in order of preference: hardware offload (the NIC accepts offloaded
programs and the pipeline fits the driver's offload profile: fused, only
offloadable maps and helpers), native (the driver runs XDP: probed by a trial
attach), generic (always possible, after the skb is built).  TC: tcx links
when the kernel has them (6.6+), else a clsact qdisc with cls_bpf.  A forced
mode the interface cannot do is an ``AttachError`` that says why.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from nfpipe.attach.features import probe_link_support
from nfpipe.attach.probe import probe_interface
from nfpipe.compose.offload import offload_problems
from nfpipe.errors import AttachError

XDP_ORDER = ("offload", "native", "generic")


@dataclass
class Placement:
    iface: str
    netns: str | None
    mode: str
    lines: list[str] = field(default_factory=list)

    def explain(self) -> str:
        where = f"{self.netns}:{self.iface}" if self.netns else self.iface
        return "\n".join([f"{where}: {self.mode}"] + [f"  {ln}" for ln in self.lines])


@functools.lru_cache(maxsize=1)
def _kernel_has_tcx() -> tuple[bool, str]:
    tcx = probe_link_support().get("tcx")
    if tcx is True:
        return True, "the kernel has tcx links (6.6+)"
    return False, f"no tcx links in this kernel ({tcx})"


def _offload_check(info: dict, build) -> tuple[bool, str]:
    offload = info.get("offload")
    if offload is not True:
        return False, f"driver {info.get('driver')}: {offload}"
    if build is None:
        return False, "the pipeline was not built for offload"
    problems = offload_problems(build)
    if problems:
        return False, f"the pipeline does not fit offload: {problems[0]}" + \
            (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
    return True, f"driver {info.get('driver')} accepts offloaded programs and the pipeline fits"


def place(hook: str, iface: str, netns: str | None = None, *, mode: str = "auto",
          build=None, info: dict | None = None) -> Placement:
    """Choose the mode for *iface*; *mode* other than "auto" forces one (checked)."""
    p = Placement(iface, netns, "")
    if hook != "xdp":
        has_tcx, why = _kernel_has_tcx()
        if mode in ("auto", "tcx"):
            if has_tcx:
                p.mode, p.lines = "tcx", [f"tcx: yes — {why}"]
                return p
            if mode == "tcx":
                raise AttachError(f"--mode tcx: {why}", iface=iface, mode="tcx")
            p.lines.append(f"tcx: no — {why}")
        p.mode = "clsact"
        p.lines.append("clsact: yes — clsact qdisc with a cls_bpf filter in direct-action "
                       "mode works on every kernel nfpipe supports")
        return p
    if info is None:
        info = probe_interface(iface, netns=netns)
    order = XDP_ORDER if mode == "auto" else (mode,)
    for m in order:
        if m == "offload":
            ok, why = _offload_check(info, build)
        elif m == "native":
            native = info.get("native_xdp")
            ok = native is True
            why = (f"driver {info.get('driver')} runs XDP in the driver "
                   f"({info.get('native_xdp_how', 'trial attach worked')})" if ok
                   else f"driver {info.get('driver')}: {native}")
        elif m == "generic":
            ok, why = True, "generic XDP works on every interface (it runs after the skb " \
                            "is built: slower than native)"
        else:
            raise AttachError(f"unknown XDP mode '{m}' (expected auto, offload, native, "
                              f"generic)", iface=iface)
        p.lines.append(f"{m}: {'yes' if ok else 'no'} — {why}")
        if ok:
            p.mode = m
            return p
        if mode != "auto":
            raise AttachError(f"--mode {m} is not possible on {iface}: {why}", iface=iface,
                              mode=m)
    raise AttachError(f"no XDP mode possible on {iface}", iface=iface)
