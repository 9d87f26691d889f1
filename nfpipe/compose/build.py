"""What a plan compiles to: one ObjectSpec per node (tail-call linking) or one for the
whole pipeline (fused linking, ``nfpipe.compose.fused``)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from nfpipe.compose.fused import FUSED_PROGRAM, compile_fused
from nfpipe.compose.nodes import build_nf
from nfpipe.compose.plan import Plan
from nfpipe.loader.objspec import ObjectSpec
from nfpipe.loader.stack import MAX_STACK, stack_depth
from nfpipe.toolchain import one_look_at_headers, spec_memo

FUSED = "<fused>"          # the key of the fused object in Build.objects


@dataclass
class Build:
    """What a plan compiles to: one ObjectSpec per node (tail calls) or one in all (fused)."""

    plan: Plan
    objects: dict[str, ObjectSpec] = field(default_factory=dict)   # node id or "<fused>"
    fused_style: str = "inline"     # or "calls": nodes behind global functions

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                  compare=False)

    def fused_with_calls(self) -> ObjectSpec:
        """The fused program with a global-function boundary per node (see fused_source);
        made once, also when two threads load the build at the same time."""
        with self._lock:
            if self.fused_style != "calls":
                self.objects[FUSED] = fused_spec(self.plan, boundaries=True)
                self.fused_style = "calls"
            return self.objects[FUSED]


def build(plan: Plan) -> Build:
    """Compile every program of *plan* (cached) and read each object into a spec."""
    out = Build(plan)
    with one_look_at_headers():
        if plan.linking == "tailcall":
            for n in plan.order:
                path = build_nf(n.source, hook=plan.hook, instance=n.id, mode="tailcall",
                                defines=n.defines)
                out.objects[n.id] = read_spec(path)
        else:
            out.objects[FUSED] = fused_spec(plan)
    return out


def fused_spec(plan: Plan, boundaries: bool = False) -> ObjectSpec:
    """The fused program of *plan* (``compile_fused``), its metadata on the stack when
    every call chain then fits the verifier's 512 bytes, else in the per-CPU map: read
    off the instructions here, the verifier would say so only after verifying it all."""
    spec = read_spec(compile_fused(plan, boundaries=boundaries))
    if stack_depth(spec.programs[FUSED_PROGRAM]) > MAX_STACK:
        spec = read_spec(compile_fused(plan, boundaries=boundaries, meta_on_stack=False))
    return spec


def read_spec(path) -> ObjectSpec:
    """The spec of compiled object *path*, kept beside it in the compile cache."""
    return ObjectSpec.from_file(path, memo=spec_memo(path))


def map_layouts(source, *, hook: str, instance: str) -> dict:
    """The map definitions (``MapSpec`` with BTF, by full name) of NF *source* built as
    node *instance*: what decodes the node's maps where the kernel keeps no types of
    them (a device-bound map; every flavour of an NF shares its key and value types)."""
    return read_spec(build_nf(source, hook=hook, instance=instance, mode="tailcall")).maps
