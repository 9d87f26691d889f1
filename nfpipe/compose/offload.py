"""The offload build of a pipeline, and what hardware offload cannot run.

An offloaded program runs on the NIC, bound to one device: one program (no tail
calls: the pipeline is fused), only the map types and helpers the driver's
offload supports (``offload/profiles/<driver>.yaml``), and no global data: the
kernel gives device-bound programs no direct value access to ``.rodata``/
``.data``/``.bss``, so a load-time constant (``NFP_CONST``) cannot be read there.
``offload_build`` therefore compiles the fused program again with every
constant compiled in (``NFP_OFFLOAD``: each a ``#define`` of its configured
value, the per-CPU counters of the NFs shared arrays updated atomically), sizes
its maps by the node configs and then by the device's limit, and clears map
flags (offload devices take none).  ``OffloadBuild.problems`` names each node,
map and helper that still does not fit, and ``explain()`` says per node, map and
helper what was decided and why: ``nfpipe plan`` prints it, and deploy refuses
with the same text.  The same build, loaded unbound on the host, runs under
BPF_PROG_TEST_RUN (an offloaded program cannot).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nfpipe.btf.types import Kind
from nfpipe.compose.build import FUSED, Build
from nfpipe.compose.fused import compile_fused, fused_constants
from nfpipe.compose.nodes import apply_map_sizes
from nfpipe.compose.offload_stores import check_stores
from nfpipe.errors import SpecError
from nfpipe.loader import insn as I
from nfpipe.loader.objspec import ObjectSpec
from nfpipe.loader.specs import PERCPU_MAP_TYPES, PROG_ARRAY
from nfpipe.profiles import Profile, load_profile
from nfpipe.toolchain.compiler import bpf_include_dir

DEFAULT_PROFILE = "nfp"      # the upstream driver with BPF offload
# a declaration of bpf_helper_defs.h: static long (* const bpf_foo)(...) = (void *) 42;
_HELPER_DECL = re.compile(r"\(\*\s*const\s+(\w+)\)\s*\([^;]*?\)\s*=\s*\(void \*\)\s*(\d+);")


@functools.lru_cache(maxsize=1)
def helper_names() -> dict[int, str]:
    """Helper id -> name, from the bpf_helper_defs.h every NF is compiled with."""
    text = (bpf_include_dir() / "bpf" / "bpf_helper_defs.h").read_text()
    return {int(num): name for name, num in _HELPER_DECL.findall(text)}


@dataclass
class OffloadBuild:
    """The fused pipeline built for one offload profile (see the module doc)."""

    profile: str
    spec: ObjectSpec | None            # None when the pipeline could not be built so
    problems: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)   # per node/map/helper: yes/no, why
    bad_nodes: set[str] = field(default_factory=set)     # nodes a problem is about
    pipeline_problems: int = 0                           # problems of no one node
    nodes: list[str] | None = None                       # a NIC tier: only these nodes

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.problems

    def explain(self) -> str:
        head = (f"offload ({self.profile}): " +
                ("yes - every node, map and helper fits" if self.ok else
                 f"no - {len(self.problems)} problem{'s' if len(self.problems) > 1 else ''}"))
        return "\n".join([head] + [f"  {d}" for d in self.decisions])


def _c_init(value: Any) -> str:
    """A C initializer for a decoded BTF value (int, bool, bytes, list, struct dict)."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return f"{value}ULL" if value >= 1 << 63 else f"{value}LL" if value >= 1 << 31 \
            else str(value)
    if isinstance(value, (bytes, bytearray)):
        return "{" + ", ".join(str(b) for b in value) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(_c_init(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f".{k} = {_c_init(v)}" for k, v in value.items()) + "}"
    raise SpecError(f"a constant of value {value!r} cannot be compiled in")


def compiled_in_constants(spec: ObjectSpec, constants: Mapping[str, Any]) -> dict[str, str]:
    """Every load-time constant of the plain fused object *spec* (its default, or the
    value in *constants*) as the C expression the offload build defines it as.  A
    node's ``X__name`` takes the type of its default's declaration
    (``X__nfp_default_name``, see NFP_CONST in nf.h); the pipeline's own
    (``nfp_redirect_*``) are plain numbers."""
    spec = spec.copy()
    for key, value in constants.items():
        if key in spec.variables:
            spec.set_constant(key, value)
    out = {}
    for name, var in spec.variables.items():
        if not var.constant or name == "nfp_hook_egress" or not _volatile(spec, var.type_id):
            continue            # a static const table is not a load-time constant
        value = spec.get_variable(name)
        node, sep, short = name.partition("__")
        if not sep:
            out[name] = f"({_c_init(value)})"
            continue
        ctype = f"__typeof__({node}__nfp_default_{short})"
        out[name] = (f"(({ctype})({_c_init(value)}))" if not isinstance(value, (list, dict, bytes))
                     else f"(({ctype}){_c_init(value)})")
    return out


def _volatile(spec: ObjectSpec, type_id: int) -> bool:
    """Whether the BTF type *type_id* is volatile-qualified (NFP_CONST declares
    ``volatile const``; for an array, ``volatile const u32 x[16]``, the qualifier is on
    the element type); True without BTF (nothing tells otherwise)."""
    if spec.btf is None or not type_id:
        return True
    for _ in range(16):
        t = spec.btf[type_id]
        if t.kind == Kind.VOLATILE:
            return True
        if t.kind not in (Kind.CONST, Kind.TYPEDEF, Kind.RESTRICT, Kind.TYPE_TAG,
                          Kind.ARRAY):
            return False
        type_id = t.type
    return False


def offload_build(build: Build, profile_name: str = DEFAULT_PROFILE,
                  ifindexes: Mapping[str, int] | None = None,
                  nic: list[str] | None = None) -> OffloadBuild:
    """The offload build of *build* for the driver profile *profile_name*, with its
    problems and decisions.  Compiled (cached by its text) when the plan allows it.
    *nic*: only these nodes, handing packets over to the host where they leave them
    (the NIC tier of a tiered placement, ``compose.tiers``)."""
    profile = load_profile(profile_name)
    out = OffloadBuild(profile_name, None, nodes=nic)
    if profile is None or not profile.offload_supported:
        out.problems.append(f"no offload profile '{profile_name}' in offload/profiles (or it "
                            f"cannot offload)")
        out.decisions.append(f"driver {profile_name}: no - {out.problems[0]}")
        return out
    plan = build.plan
    if plan.hook not in profile.offload.get("hooks", ["xdp"]) or plan.hook != "xdp":
        out.problems.append(f"hook {plan.hook}: nfpipe offloads XDP pipelines only")
    if plan.linking != "fused" or FUSED not in build.objects:
        out.problems.append(f"{profile_name} offload runs one program: the pipeline must be "
                            f"fused (linking: fused or auto)")
    if out.problems:
        out.decisions += [f"pipeline: no - {p}" for p in out.problems]
        return out
    _check_redirects(out, plan, nic)
    plain = build.objects[FUSED]
    compiled = compiled_in_constants(plain, fused_constants(plan, ifindexes))
    compiled.update(_check_nodes(out, plan, profile, nic))
    spec = ObjectSpec.from_file(compile_fused(plan, compiled_in=compiled, nic=nic))
    for n in plan.order:
        impl = plan.spec.nodes[n.id].impl
        if impl is not None and (nic is None or n.id in nic):
            spec = apply_map_sizes(spec, n.id, impl)
    spec = spec.copy()
    out.spec = spec
    consts = [k for k in compiled if "__" in k]
    out.decisions.append(f"constants: yes - {len(consts)} compiled in (an offloaded program "
                         f"cannot read .rodata)" if consts else
                         "constants: none to compile in")
    _check_maps(out, spec, profile)
    _check_helpers(out, spec, profile, plan)
    if profile.offload.get("map_value_writes") == "atomic-add-only":
        check_stores(out, spec, profile, _node_of_file(plan))
    limit = profile.offload.get("max_instructions")
    count = sum(p.insn_count for p in spec.programs.values())
    if isinstance(limit, int) and count > limit:
        out.pipeline_problems += 1
        out.problems.append(f"the program has {count} instructions; {profile_name} offload "
                            f"takes at most {limit}")
        out.decisions.append(f"program: no - {out.problems[-1]}")
    else:
        out.decisions.append(f"program: yes - {count} instructions (limit: "
                             f"{limit if limit is not None else 'none known'})")
    return out


def _check_redirects(out: OffloadBuild, plan, nic: list[str] | None) -> None:
    """An edge to ``redirect:IFACE`` keeps its node on the host: the NIC would need the
    host's ifindex and bpf_redirect, which no offload profile has (nfp's helpers do
    not include it; netdevsim would take it and run nothing)."""
    for n in plan.order:
        if nic is not None and n.id not in nic:
            continue
        for t in n.targets:
            if t.redirect_iface:
                why = (f"node '{n.id}': port '{t.port}' -> redirect:{t.redirect_iface}: an "
                       f"offloaded program cannot redirect to another interface (the "
                       f"redirect runs on the host)")
                out.bad_nodes.add(n.id)
                out.problems.append(why)
                out.decisions.append(f"node '{n.id}': no - {why.split(': ', 1)[1]}")


def _check_nodes(out: OffloadBuild, plan, profile: Profile,
                 nic: list[str] | None) -> dict[str, str]:
    """Ask each node's NF what its config needs of the device (a filter's rule set must
    fit its linear entries), and which names its offload flavour is compiled with."""
    limit = profile.offload.get("max_entries")
    defines: dict[str, str] = {}
    for n in plan.order:
        impl = plan.spec.nodes[n.id].impl
        if impl is None or (nic is not None and n.id not in nic):
            continue
        for why in impl.offload_problems(limit):
            out.bad_nodes.add(n.id)
            out.problems.append(f"node '{n.id}': {why}")
            out.decisions.append(f"node '{n.id}': no - {why}")
        mine = impl.offload_defines(limit)
        for k, v in mine.items():
            if defines.setdefault(k, v) != v:     # one program: one value per name
                raise SpecError(f"node '{n.id}': its offload build needs {k}={v}, another "
                                f"node's {defines[k]}")
        if mine:
            out.decisions.append(f"node '{n.id}': {impl.kind}, its offload flavour (" +
                                 ", ".join(f"{k}={v}" for k, v in sorted(mine.items())) + ")")
    return defines


def _where(name: str) -> str:
    node, _, short = name.partition("__")
    return f"node '{node}': map '{short}'" if short else f"map '{name}'"


def _check_maps(out: OffloadBuild, spec: ObjectSpec, profile: Profile) -> None:
    off = profile.offload
    maps_ok = set(off.get("map_types", []))
    neutral = set(off.get("map_types_neutral", []))
    limit = off.get("max_entries")
    for m in spec.maps.values():
        where = _where(m.name)
        why = None
        if m.is_global_data:
            why = (f"{where} is global data ({m.section}): the kernel gives device-bound "
                   f"programs no direct value access to .rodata/.data/.bss (constants are "
                   f"compiled in; this comes from a string or a const table in the code, or a "
                   f"global variable)")
        elif m.type == PROG_ARRAY:
            why = f"{where} is a prog_array map: tail calls cannot be offloaded"
        elif m.type in PERCPU_MAP_TYPES:
            why = f"{where} is a {m.type_name} map: an offload device has no per-CPU maps"
        elif m.type_name in neutral:
            out.decisions.append(f"{where}: yes - a {m.type_name} map stays on the host "
                                 f"(neutral)")
            continue
        elif m.type_name not in maps_ok:
            why = (f"{where} is a {m.type_name} map; {profile.name} offload supports "
                   f"{', '.join(sorted(maps_ok | neutral))}")
        if why:
            node, sep, _ = m.name.partition("__")
            if sep:
                out.bad_nodes.add(node)
            else:
                out.pipeline_problems += 1
            out.problems.append(why)
            out.decisions.append(f"{where}: no - {why.removeprefix(where + ' ')}")
            continue
        notes = []
        if isinstance(limit, int) and m.max_entries > limit:
            notes.append(f"sized down from {_entries(m.max_entries)} ({profile.name} holds "
                         f"{limit})")
            m.max_entries = limit
        if m.flags and not off.get("map_flags", False):
            notes.append(f"flags {m.flags:#x} cleared (offload devices take none)")
            m.flags = 0
        out.decisions.append(f"{where}: yes - {m.type_name}, {_entries(m.max_entries)} on "
                             f"the device" + (f"; {'; '.join(notes)}" if notes else ""))


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def _node_of_file(plan) -> dict[str, str]:
    """Source file -> the node(s) built from it ("a/b" when two nodes share it)."""
    out: dict[str, list[str]] = {}
    for n in plan.order:
        out.setdefault(str(n.source), []).append(n.id)
    return {k: "/".join(v) for k, v in out.items()}


def _check_helpers(out: OffloadBuild, spec: ObjectSpec, profile: Profile, plan) -> None:
    helpers_ok = profile.offload.get("helpers")
    names = helper_names()
    files = _node_of_file(plan)
    used: dict[str, set[str]] = {}
    for p in spec.programs.values():
        for i in range(p.insn_count):
            ins = I.decode(p.insns, i)
            if ins.is_helper_call:
                li = p.source_line(i)
                node = files.get(li.file, "") if li is not None else ""
                used.setdefault(names.get(ins.imm, f"helper #{ins.imm}"), set()).add(
                    node or "the pipeline")
    for h in sorted(used):
        who = ", ".join(sorted(f"node '{x}'" if x != "the pipeline" else x for x in used[h]))
        if not isinstance(helpers_ok, list):
            out.decisions.append(f"helper {h} ({who}): yes - {profile.name} lists no helpers "
                                 f"(the device decides at load)")
        elif h in helpers_ok:
            out.decisions.append(f"helper {h} ({who}): yes")
        else:
            why = (f"{who} calls {h}, which {profile.name} offload does not support (it "
                   f"supports: {', '.join(sorted(helpers_ok))})")
            for x in used[h]:
                if x == "the pipeline":
                    out.pipeline_problems += 1
                else:
                    out.bad_nodes.update(x.split("/"))
            out.problems.append(why)
            out.decisions.append(f"helper {h}: no - {why}")


def offload_problems(build: Build, profile_name: str = DEFAULT_PROFILE) -> list[str]:
    """What keeps *build* from running offloaded with *profile_name* (the offload
    build's problems)."""
    return offload_build(build, profile_name).problems
