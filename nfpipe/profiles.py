"""Driver capability profiles (``offload/profiles/*.yaml``) and their comparison with a
live probe.

A profile is data: what nfpipe expects of a driver before it has looked (native
XDP, XDP feature bits, hardware offload and its limits).  ``compare`` lists every
point where a live ``probe_interface`` result contradicts it; the probe wins.
The directory is nfpipe's ``offload/profiles``, or ``$NFPIPE_PROFILES``
(``nfpipe.resources.profiles_dir``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nfpipe import resources
from nfpipe.errors import SpecError


def profile_dir() -> Path:
    return resources.profiles_dir()


@dataclass(frozen=True)
class Profile:
    name: str
    path: str
    native_xdp: bool | None
    generic_xdp: bool | None
    xdp_features: list[str]
    xdp_features_conditional: list[str]
    offload: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def offload_supported(self) -> bool:
        return bool(self.offload.get("supported"))


def parse_profile(path: Path) -> Profile:
    """The profile in file *path* (SpecError if it is not one)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"profile is not valid YAML: {exc}", file=path) from None
    if not isinstance(data, dict) or "driver" not in data:
        raise SpecError("a profile needs a 'driver' key", file=path)
    return Profile(name=str(data["driver"]), path=str(path),
                   native_xdp=data.get("native_xdp"), generic_xdp=data.get("generic_xdp"),
                   xdp_features=list(data.get("xdp_features") or []),
                   xdp_features_conditional=list(data.get("xdp_features_conditional") or []),
                   offload=dict(data.get("offload") or {}), data=data)


def list_profiles() -> dict[str, Profile]:
    """Every profile in the directory, by driver name."""
    d = profile_dir()
    out = {}
    if d.is_dir():
        for p in sorted(d.glob("*.yaml")):
            prof = parse_profile(p)
            out[prof.name] = prof
    return out


def load_profile(driver: str) -> Profile | None:
    """The profile of *driver*, or None if nfpipe has none."""
    return list_profiles().get(driver)


def compare(profile: Profile, probed: dict[str, Any]) -> list[dict[str, Any]]:
    """Where the live probe of an interface disagrees with *profile*: a list of
    ``{"what", "profile", "probe", "note"}``; the probe is what nfpipe believes."""
    out = []
    native = probed.get("native_xdp")
    if native is True or (isinstance(native, str) and native.startswith("no")):
        live = native is True
        if profile.native_xdp is not None and live != profile.native_xdp:
            out.append({"what": "native_xdp", "profile": profile.native_xdp, "probe": native,
                        "note": "trial attach result used"})
    xdp = probed.get("xdp") or {}
    if xdp.get("source"):
        live = set(xdp.get("xdp_features") or [])
        expected = set(profile.xdp_features)
        allowed = expected | set(profile.xdp_features_conditional)
        missing = sorted(expected - live)
        extra = sorted(live - allowed)
        if missing or extra:
            out.append({"what": "xdp_features", "profile": sorted(expected),
                        "probe": sorted(live),
                        "note": "; ".join(filter(None, [
                            f"missing {', '.join(missing)}" if missing else "",
                            f"unexpected {', '.join(extra)}" if extra else ""])) +
                        " (kernel-reported bits used)"})
    off = probed.get("offload")
    if off is True or (isinstance(off, str) and off.startswith("no")):
        live = off is True
        if live != profile.offload_supported:
            out.append({"what": "offload", "profile": profile.offload_supported, "probe": off,
                        "note": "trial offload load result used"})
    return out
