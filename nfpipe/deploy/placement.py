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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from nfpipe.attach.features import probe_link_support
from nfpipe.attach.probe import probe_interface
from nfpipe.compose.offload import DEFAULT_PROFILE, OffloadBuild, offload_build
from nfpipe.compose.tiers import TieredBuild, tiered_build
from nfpipe.errors import AttachError
from nfpipe.kernel.netns import in_netns
from nfpipe.profiles import load_profile
from nfpipe.runtime import Pipeline

XDP_ORDER = ("offload", "tiered", "native", "generic")
# --mode offload: the whole pipeline on the NIC, else its offloadable prefix (tiers)
FORCED = {"offload": ("offload", "tiered")}


@dataclass
class Placement:
    iface: str
    netns: str | None
    mode: str
    lines: list[str] = field(default_factory=list)
    # offload considered: the offload build for this device's profile (what deploy
    # loads when the mode is "offload"), and the device's ifindex
    offload: OffloadBuild | None = None
    ifindex: int = 0
    tiers: TieredBuild | None = None      # mode "tiered": the NIC's and the host's programs

    def explain(self) -> str:
        where = f"{self.netns}:{self.iface}" if self.netns else self.iface
        return "\n".join([f"{where}: {self.mode}"] + [f"  {ln}" for ln in self.lines])


@functools.lru_cache(maxsize=1)
def _kernel_has_tcx() -> tuple[bool, str]:
    tcx = probe_link_support().get("tcx")
    if tcx is True:
        return True, "the kernel has tcx links (6.6+)"
    return False, f"no tcx links in this kernel ({tcx})"


def offload_profile(driver: str | None) -> str:
    """The profile an offload to *driver* is checked against: the driver's own when
    nfpipe has one that can offload, else nfp's (the upstream driver with offload)."""
    prof = load_profile(driver) if driver else None
    return prof.name if prof is not None and prof.offload_supported else DEFAULT_PROFILE


def _offload_check(p: Placement, info: dict, build) -> tuple[bool, str]:
    offload = info.get("offload")
    if offload is not True:
        return False, f"driver {info.get('driver')}: {offload}"
    if build is None:
        return False, "the pipeline was not built for offload"
    p.offload = offload_build(build, offload_profile(info.get("driver")))
    p.ifindex = int(info.get("ifindex") or 0)
    if not p.offload.ok:
        return False, "the pipeline does not fit offload: " + "; ".join(p.offload.problems)
    return True, (f"driver {info.get('driver')} accepts offloaded programs and the "
                  f"pipeline fits the {p.offload.profile} profile")


def _tiered_check(p: Placement, info: dict, build) -> tuple[bool, str]:
    """The NIC runs the offloadable prefix, native XDP on the same interface the rest
    (``compose.tiers``): needs the device to offload and its driver to run XDP."""
    if info.get("native_xdp") is not True:
        return False, f"driver {info.get('driver')} runs no native XDP for the host's part"
    assert p.offload is not None
    p.tiers, why = tiered_build(build, p.offload.profile, full=p.offload)
    if p.tiers is None:
        return False, why
    return True, (f"the NIC ({info.get('driver')}) runs nodes "
                  f"{', '.join(p.tiers.nic_nodes)}, native XDP the rest")


def offload_load(placements: dict, pipeline: str) -> dict:
    """``Pipeline.load`` keywords for the placements whose mode is offload (or, for
    tiers, the NIC's part: key "tiers"): an offloaded program is bound to one device,
    so at most one such interface."""
    off = [p for p in placements.values() if p.mode in ("offload", "tiered")]
    if not off:
        return {}
    if len(off) > 1:
        raise AttachError(f"pipeline '{pipeline}' is offloaded to {len(off)} interfaces "
                          f"({', '.join(p.iface for p in off)}); an offloaded program is "
                          f"bound to one device: deploy it to one interface",
                          iface=off[1].iface, mode="offload")
    p = off[0]
    if p.mode == "tiered":
        assert p.tiers is not None
        return {"offload": p.tiers.nic, "device": p.ifindex, "netns": p.netns,
                "tiers": p.tiers}
    return {"offload": p.offload, "device": p.ifindex, "netns": p.netns}


def load_for(built, kw: dict, **more):
    """``Pipeline.load(built)`` with the keywords of ``offload_load`` (the device's
    ifindex is resolved in its namespace, so the load happens there)."""
    kw = dict(kw)
    kw.pop("tiers", None)
    with in_netns(kw.pop("netns", None)):
        return Pipeline.load(built, **kw, **more)


class ProbesAhead:
    """``probe_interface`` of every target of an XDP pipeline, started in a thread
    before the build, so its trial attach (mostly waiting in the kernel for the
    detach's RCU grace period) overlaps the build's Python work; ``info(t)`` waits
    for target *t*'s, raising what its probe raised.  ``close()`` always waits: a
    trial never outlives the deploy that started it."""

    def __init__(self, hook: str, targets: list):
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict = {}
        if hook == "xdp" and targets:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="nfpipe-probe")
            self._futures = {t: self._pool.submit(probe_interface, t.ifname, netns=t.netns)
                             for t in targets}

    def info(self, t) -> dict | None:
        f: Future | None = self._futures.get(t)
        return f.result() if f is not None else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> ProbesAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
    order = XDP_ORDER if mode == "auto" else FORCED.get(mode, (mode,))
    first_why = ""
    for m in order:
        if m == "offload":
            ok, why = _offload_check(p, info, build)
        elif m == "tiered":
            if order[0] == "tiered":            # --mode tiered: the offload check first
                ok, why = _offload_check(p, info, build)
            if p.offload is None:
                if order[0] != "tiered":
                    continue            # the device cannot offload at all: no tiers
                ok = False
            else:
                ok, why = _tiered_check(p, info, build)
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
        if m == "offload" and p.offload is not None:
            p.lines += [f"  {d}" for d in p.offload.decisions]
        if m == "tiered" and p.tiers is not None:
            p.lines += [f"  {d}" for d in p.tiers.decisions]
        if ok:
            p.mode = m
            return p
        first_why = first_why or why
        if mode != "auto" and m == order[-1]:
            more = f"; tiers: {why}" if len(order) > 1 and m == "tiered" else ""
            raise AttachError(f"--mode {mode} is not possible on {iface}: {first_why}{more}",
                              iface=iface, mode=mode)
    if mode != "auto":
        raise AttachError(f"--mode {mode} is not possible on {iface}: {first_why}",
                          iface=iface, mode=mode)
    raise AttachError(f"no XDP mode possible on {iface}", iface=iface)
