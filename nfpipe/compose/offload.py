"""What hardware offload cannot run: checked on the built pipeline, before any kernel.

An offloaded program runs on the NIC: only the map types and helpers the
driver's offload supports (``offload/profiles/<driver>.yaml``), and no tail
calls (so offload pipelines are always fused).  ``offload_problems(build)``
names each node, map and helper that does not fit.
"""
from __future__ import annotations

import functools
import re

from nfpipe.compose.build import FUSED, Build
from nfpipe.loader import insn as I
from nfpipe.profiles import load_profile
from nfpipe.toolchain.compiler import bpf_include_dir

DEFAULT_PROFILE = "nfp"      # the upstream driver with BPF offload
# a declaration of bpf_helper_defs.h: static long (* const bpf_foo)(...) = (void *) 42;
_HELPER_DECL = re.compile(r"\(\*\s*const\s+(\w+)\)\s*\([^;]*?\)\s*=\s*\(void \*\)\s*(\d+);")


@functools.lru_cache(maxsize=1)
def helper_names() -> dict[int, str]:
    """Helper id -> name, from the bpf_helper_defs.h every NF is compiled with."""
    text = (bpf_include_dir() / "bpf" / "bpf_helper_defs.h").read_text()
    return {int(num): name for name, num in _HELPER_DECL.findall(text)}


def offload_problems(build: Build, profile_name: str = DEFAULT_PROFILE) -> list[str]:
    profile = load_profile(profile_name)
    if profile is None or not profile.offload_supported:
        return [f"no offload profile '{profile_name}' in offload/profiles (or it cannot "
                f"offload)"]
    off = profile.offload
    maps_ok = set(off.get("map_types", [])) | set(off.get("map_types_neutral", []))
    helpers_ok = set(off.get("helpers", []))
    if build.plan.linking != "fused" or FUSED not in build.objects:
        return [f"{profile_name} offload runs one program: the pipeline must be fused "
                f"(linking: fused or auto)"]
    spec = build.objects[FUSED]
    names = helper_names()
    problems = []
    for m in spec.maps.values():
        if m.type_name in maps_ok or m.is_global_data and "array" in maps_ok:
            continue
        node, _, short = m.name.partition("__")
        where = f"node '{node}': map '{short}'" if short else f"map '{m.name}'"
        problems.append(f"{where} is a {m.type_name} map; {profile_name} offload supports "
                        f"{', '.join(sorted(maps_ok))}")
    used = set()
    for p in spec.programs.values():
        for i in range(p.insn_count):
            ins = I.decode(p.insns, i)
            if ins.is_helper_call:
                used.add(names.get(ins.imm, f"helper #{ins.imm}"))
    for h in sorted(used - helpers_ok):
        problems.append(f"the pipeline calls {h}, which {profile_name} offload does not "
                        f"support (it supports: {', '.join(sorted(helpers_ok))})")
    return problems
