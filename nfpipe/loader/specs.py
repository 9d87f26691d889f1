"""The parts of a BPF object's spec (``nfpipe.loader.objspec.ObjectSpec``): programs,
maps, variables, relocations, and the section-name table.

``MapSpec`` / ``ProgramSpec`` / ``VariableSpec`` are pure data: no file
descriptors, no kernel calls, deterministic for a given ELF file.  They can be
inspected (``nfpipe object show``), edited (``.rodata`` constants, map sizes)
and copied before ``nfpipe.loader.Object.load`` turns them into live objects.

Programs are already *linked*: each ``ProgramSpec.insns`` holds the program's
own instructions followed by every subprogram it calls, with call offsets
fixed.  What is left symbolic are the references to maps (``Reloc``), which
only get fds at load time.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from nfpipe.btf import BTF
from nfpipe.kernel import abi

MapType, ProgType, AttachType = abi.MapType, abi.ProgType, abi.AttachType

MAP_TYPE_NAMES = {int(t): t.name.lower() for t in MapType}
PROG_TYPE_NAMES = {int(t): t.name.lower() for t in ProgType}
PERCPU_MAP_TYPES = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY,
                              MapType.LRU_PERCPU_HASH, MapType.PERCPU_CGROUP_STORAGE})
MAP_IN_MAP_TYPES = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})
PROG_ARRAY = MapType.PROG_ARRAY
ARRAY = MapType.ARRAY
BPF_F_XDP_HAS_FRAGS = abi.BPF_F_XDP_HAS_FRAGS


@dataclass(frozen=True)
class SectionDef:
    """How a program section name maps to a program type (libbpf's conventions)."""

    prefix: str
    prog_type: int
    attach_type: int = 0
    flags: int = 0
    allow_sub: bool = True      # "xdp/foo" as well as "xdp"


# Order matters: the first matching prefix wins, so more specific names come first.
SECTION_DEFS: tuple[SectionDef, ...] = (
    SectionDef("xdp.frags/devmap", ProgType.XDP, AttachType.XDP_DEVMAP, BPF_F_XDP_HAS_FRAGS, False),
    SectionDef("xdp/devmap", ProgType.XDP, AttachType.XDP_DEVMAP, 0, False),
    SectionDef("xdp.frags/cpumap", ProgType.XDP, AttachType.XDP_CPUMAP, BPF_F_XDP_HAS_FRAGS, False),
    SectionDef("xdp/cpumap", ProgType.XDP, AttachType.XDP_CPUMAP, 0, False),
    SectionDef("xdp.frags", ProgType.XDP, AttachType.XDP, BPF_F_XDP_HAS_FRAGS, True),
    SectionDef("xdp", ProgType.XDP, AttachType.XDP, 0, True),
    SectionDef("tcx/ingress", ProgType.SCHED_CLS, AttachType.TCX_INGRESS, 0, False),
    SectionDef("tcx/egress", ProgType.SCHED_CLS, AttachType.TCX_EGRESS, 0, False),
    SectionDef("tc/ingress", ProgType.SCHED_CLS, AttachType.TCX_INGRESS, 0, False),
    SectionDef("tc/egress", ProgType.SCHED_CLS, AttachType.TCX_EGRESS, 0, False),
    SectionDef("netkit/primary", ProgType.SCHED_CLS, AttachType.NETKIT_PRIMARY, 0, False),
    SectionDef("netkit/peer", ProgType.SCHED_CLS, AttachType.NETKIT_PEER, 0, False),
    SectionDef("tc", ProgType.SCHED_CLS, 0, 0, True),
    SectionDef("classifier", ProgType.SCHED_CLS, 0, 0, True),
    SectionDef("action", ProgType.SCHED_ACT, 0, 0, True),
    SectionDef("socket", ProgType.SOCKET_FILTER, 0, 0, True),
    SectionDef("sk_skb/stream_parser", ProgType.SK_SKB, AttachType.SK_SKB_STREAM_PARSER, 0, False),
    SectionDef("sk_skb/stream_verdict", ProgType.SK_SKB, AttachType.SK_SKB_STREAM_VERDICT, 0,
               False),
    SectionDef("sk_skb/verdict", ProgType.SK_SKB, AttachType.SK_SKB_VERDICT, 0, False),
    SectionDef("sk_skb", ProgType.SK_SKB, 0, 0, True),
    SectionDef("sk_msg", ProgType.SK_MSG, AttachType.SK_MSG_VERDICT, 0, False),
    SectionDef("cgroup_skb/ingress", ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS, 0, False),
    SectionDef("cgroup_skb/egress", ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS, 0, False),
    SectionDef("flow_dissector", ProgType.FLOW_DISSECTOR, AttachType.FLOW_DISSECTOR, 0, False),
    SectionDef("sk_lookup", ProgType.SK_LOOKUP, AttachType.SK_LOOKUP, 0, False),
    SectionDef("lwt_in", ProgType.LWT_IN, 0, 0, True),
    SectionDef("lwt_out", ProgType.LWT_OUT, 0, 0, True),
    SectionDef("lwt_xmit", ProgType.LWT_XMIT, 0, 0, True),
    SectionDef("netfilter", ProgType.NETFILTER, AttachType.NETFILTER, 0, False),
    SectionDef("kprobe", ProgType.KPROBE, 0, 0, True),
    SectionDef("tracepoint", ProgType.TRACEPOINT, 0, 0, True),
    SectionDef("tp", ProgType.TRACEPOINT, 0, 0, True),
    SectionDef("raw_tracepoint", ProgType.RAW_TRACEPOINT, 0, 0, True),
    SectionDef("raw_tp", ProgType.RAW_TRACEPOINT, 0, 0, True),
    SectionDef("perf_event", ProgType.PERF_EVENT, 0, 0, False),
    SectionDef("syscall", ProgType.SYSCALL, 0, 0, False),
)


def section_def(section: str) -> SectionDef | None:
    """The definition that names *section*'s program type, or None."""
    for d in SECTION_DEFS:
        if section == d.prefix or (d.allow_sub and section.startswith(d.prefix + "/")):
            return d
    return None


@dataclass
class Reloc:
    """A reference from an instruction to a map, resolved to an fd at load time.

    ``kind`` is ``"map"`` (ld_imm64 of the map itself) or ``"map_value"``
    (address of ``offset`` inside the single value of a global-data map).
    """

    insn: int
    kind: str
    map: str
    offset: int = 0


@dataclass
class LineInfoSpec(abi.LineCol):
    insn: int
    file_name_off: int
    line_off: int
    line_col: int
    file: str = ""
    text: str = ""


@dataclass
class ProgramSpec:
    name: str
    section: str
    type: int
    insns: bytes
    license: str = "GPL"
    expected_attach_type: int = 0
    flags: int = 0
    relocs: list[Reloc] = field(default_factory=list)
    func_info: list[tuple[int, int]] = field(default_factory=list)   # (insn index, BTF FUNC id)
    line_info: list[LineInfoSpec] = field(default_factory=list)
    subprograms: list[str] = field(default_factory=list)
    btf: BTF | None = field(default=None, repr=False, compare=False)

    @property
    def type_name(self) -> str:
        return PROG_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8

    def source_line(self, insn: int) -> LineInfoSpec | None:
        """The C source line covering instruction *insn* (from BTF line info)."""
        best = None
        for li in self.line_info:
            if li.insn <= insn:
                best = li
            else:
                break
        return best

    def copy(self) -> ProgramSpec:
        return copy.copy(self)


@dataclass
class MapSpec:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    numa_node: int | None = None
    map_extra: int = 0
    pinning: int = 0                    # 0: none, 1: by name (LIBBPF_PIN_BY_NAME)
    key_type_id: int = 0                # in btf
    value_type_id: int = 0
    inner: MapSpec | None = None        # map-in-map: the inner map's definition
    contents: list[tuple[Any, Any]] = field(default_factory=list)  # initial entries
    data: bytes | None = None           # global data: the single value's initial bytes
    freeze: bool = False                # .rodata: frozen after its contents are written
    section: str = ".maps"
    btf: BTF | None = field(default=None, repr=False, compare=False)

    PIN_NONE = 0
    PIN_BY_NAME = 1

    @property
    def type_name(self) -> str:
        return MAP_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def is_global_data(self) -> bool:
        return self.data is not None

    @property
    def percpu(self) -> bool:
        return self.type in PERCPU_MAP_TYPES

    def copy(self) -> MapSpec:
        dup = copy.copy(self)
        dup.contents = list(self.contents)
        dup.inner = self.inner.copy() if self.inner else None
        return dup


@dataclass(frozen=True)
class VariableSpec:
    """A global variable in a data section (.data, .rodata*, .bss)."""

    name: str
    section: str
    offset: int
    size: int
    type_id: int

    @property
    def constant(self) -> bool:
        return self.section.startswith(".rodata")
