"""Which stores of a program an atomic-add-only offload device refuses.

nfp's verifier hook (``nfp_bpf_check_store`` / ``nfp_bpf_check_ptr`` /
``nfp_bpf_check_atomic`` in ``drivers/net/ethernet/netronome/nfp/bpf/verifier.c``)
refuses, per instruction, by the type the kernel's verifier gave the destination
register:

* a plain store (``BPF_ST``/``BPF_STX`` ``BPF_MEM``) through a map-value pointer:
  "map writes not supported" -- the device's map values change only by atomic adds;
* an atomic operation on a map value other than a plain add (no ``BPF_FETCH``, no
  and/or/xor/xchg/cmpxchg): "atomic op not supported";
* a store to the context (``struct xdp_md``): "unsupported store to context field".

netdevsim checks none of this, and nfpipe has no nfp device, so this module finds
those instructions ahead of the device: a forward data-flow over the program's
instructions that tracks which registers (and which 8-byte stack slots, for
spilled pointers) may hold a map value (``bpf_map_lookup_elem``'s result and any
pointer arithmetic on it) or the context (r1 at entry), joined over every path and
through BPF-to-BPF calls.  It is an over-approximation of the verifier's own types
on the registers it follows ("may be a map value on some path"), and it follows
pointers only through registers and ``r10``-relative stack slots: a pointer stored
through another stack pointer or into a map is lost (a store through it is not
reported).  What it reports, the device would refuse.
"""
from __future__ import annotations

from dataclasses import dataclass

from nfpipe.loader import insn as I

MAP_LOOKUP_ELEM = 1                 # the helper whose result is a map value
MAP, CTX = "map value", "context"

BPF_MEM, BPF_ATOMIC = 0x60, 0xC0    # the mode bits of a load/store opcode
BPF_DW = 0x18                       # the size bits: 8 bytes
BPF_X = 0x08                        # the source bit of ALU/JMP: a register
BPF_ADD, BPF_SUB, BPF_MOV = 0x00, 0x10, 0xB0
BPF_FETCH = 0x01
BPF_XCHG, BPF_CMPXCHG = 0xE0 | BPF_FETCH, 0xF0 | BPF_FETCH   # always fetch
_ATOMIC_OPS = {BPF_ADD: "add", 0x40: "or", 0x50: "and", 0xA0: "xor"}   # (imm without FETCH)
BPF_JA, BPF_CALL, BPF_EXIT = 0x00, 0x80, 0x90
FP = 10                             # the frame pointer


@dataclass(frozen=True)
class Refused:
    insn: int
    why: str


_Regs = tuple[frozenset, ...]        # per register r0..r10: the kinds it may hold
_State = tuple[_Regs, frozenset]     # and (stack offset, kind) pairs of spilled pointers


def _join(a: _State, b: _State) -> _State:
    return tuple(x | y for x, y in zip(a[0], b[0])), a[1] | b[1]


def _set(regs: _Regs, r: int, kinds: frozenset) -> _Regs:
    return regs[:r] + (kinds,) + regs[r + 1:]


_NONE = frozenset()
_SCALARS: _Regs = (_NONE,) * 11


def refused_stores(insns: bytes | bytearray) -> list[Refused]:
    """The instructions of program *insns* (its entry at 0, subprograms after it) that a
    device taking only atomic adds to map values would refuse, in order."""
    n = I.count(insns)
    decoded = [I.decode(insns, i) for i in range(n)]
    entry: _State = (_set(_SCALARS, 1, frozenset({CTX})), _NONE)
    states: dict[int, _State] = {0: entry}
    work = [0]
    found: dict[int, str] = {}

    def flow(to: int, st: _State) -> None:
        if not 0 <= to < n:
            return
        old = states.get(to)
        new = st if old is None else _join(old, st)
        if new != old:
            states[to] = new
            work.append(to)

    while work:
        i = work.pop()
        regs, stack = states[i]
        ins = decoded[i]
        cls, op = ins.opcode & 0x07, ins.opcode & 0xF0
        if ins.is_ld_imm64:
            kinds = frozenset({MAP}) if ins.src == I.PSEUDO_MAP_VALUE else _NONE
            flow(i + 2, (_set(regs, ins.dst, kinds), stack))
            continue
        if cls in (I.BPF_ALU64, I.BPF_ALU):
            src = regs[ins.src] if ins.opcode & BPF_X else _NONE
            if cls == I.BPF_ALU or (op == BPF_MOV and ins.off):   # 32-bit, or movsx
                kinds = _NONE
            elif op == BPF_MOV:
                kinds = src
            elif op in (BPF_ADD, BPF_SUB):                        # pointer arithmetic
                kinds = regs[ins.dst] | (src if op == BPF_ADD else _NONE)
            else:
                kinds = _NONE
            flow(i + 1, (_set(regs, ins.dst, kinds), stack))
            continue
        if cls == I.BPF_LDX:
            kinds = _NONE
            if ins.src == FP and ins.opcode & 0x18 == BPF_DW:
                kinds = frozenset(k for off, k in stack if off == ins.off)
            flow(i + 1, (_set(regs, ins.dst, kinds), stack))
            continue
        if cls in (I.BPF_ST, I.BPF_STX):
            mode = ins.opcode & 0xE0
            target = regs[ins.dst]
            if mode == BPF_ATOMIC:
                if MAP in target and ins.imm != BPF_ADD:
                    found.setdefault(i, f"an atomic operation ({_atomic_name(ins.imm)}) on a "
                                        f"map value: only atomic adds are taken")
                if CTX in target:
                    found.setdefault(i, "an atomic operation on the context")
                if ins.imm & BPF_FETCH:                 # the old value into src (or r0)
                    r = 0 if ins.imm == BPF_CMPXCHG else ins.src
                    regs = _set(regs, r, _NONE)
            elif mode == BPF_MEM:
                if MAP in target:
                    found.setdefault(i, "a plain store to a map value: map values change only "
                                        "by atomic adds (nfp_atomic_add64, nfp_percpu_inc "
                                        "in nfpipe/nf.h)")
                if CTX in target:
                    found.setdefault(i, "a store to the context (struct xdp_md)")
                if ins.dst == FP:
                    size_dw = ins.opcode & 0x18 == BPF_DW
                    kept = frozenset(x for x in stack if x[0] != ins.off)
                    spilled = regs[ins.src] if cls == I.BPF_STX and size_dw else _NONE
                    stack = kept | frozenset((ins.off, k) for k in spilled)
            flow(i + 1, (regs, stack))
            continue
        if cls in (I.BPF_JMP, I.BPF_JMP32):
            if op == BPF_EXIT and cls == I.BPF_JMP:
                continue
            if op == BPF_CALL and cls == I.BPF_JMP:
                after = regs
                for r in range(1, 6):
                    after = _set(after, r, _NONE)
                if ins.is_subprog_call:
                    # the callee starts with the caller's r1-r5 and a frame of its own
                    flow(i + 1 + ins.imm, (_set(regs, 0, _NONE)[:6] + _SCALARS[6:], _NONE))
                    after = _set(after, 0, _NONE)
                else:
                    after = _set(after, 0, frozenset({MAP}) if ins.is_helper_call and
                                 ins.imm == MAP_LOOKUP_ELEM else _NONE)
                flow(i + 1, (after, stack))
                continue
            if op == BPF_JA:
                flow(i + 1 + (ins.imm if cls == I.BPF_JMP32 else ins.off), (regs, stack))
                continue
            flow(i + 1, (regs, stack))
            flow(i + 1 + ins.off, (regs, stack))
            continue
        flow(i + 1, (_set(regs, 0, _NONE), stack))  # LD_ABS/LD_IND: into r0
    return [Refused(i, found[i]) for i in sorted(found)]


def _atomic_name(imm: int) -> str:
    """An atomic instruction's operation as the kernel's docs name it."""
    if imm in (BPF_XCHG, BPF_CMPXCHG):
        return "xchg" if imm == BPF_XCHG else "cmpxchg"
    return _ATOMIC_OPS.get(imm & ~BPF_FETCH, f"op {imm:#x}") + (
        " with fetch" if imm & BPF_FETCH else "")


def check_stores(out, spec, profile, node_of_file: dict[str, str]) -> None:
    """Add to offload build *out* (an ``OffloadBuild``) a problem per source line of
    *spec*'s programs that *profile*'s device refuses to store from, naming its node,
    and one decision line."""
    seen: dict[tuple[str, str], list[str]] = {}
    for p in spec.programs.values():
        for r in refused_stores(p.insns):
            li = p.source_line(r.insn)
            node = node_of_file.get(li.file, "") if li is not None else ""
            where = f"{li.file.rsplit('/', 1)[-1]}:{li.line}" if li is not None else \
                f"instruction {r.insn}"
            seen.setdefault((node, r.why), [])
            if where not in seen[(node, r.why)]:
                seen[(node, r.why)].append(where)
    if not seen:
        out.decisions.append(f"stores: yes - no plain store to a map value or the context "
                             f"({profile.name} takes only atomic adds to map values)")
        return
    for (node, why), wheres in seen.items():
        who = f"node '{node}'" if node else "the pipeline"
        text = f"{who} makes {why} at {', '.join(wheres)}, which {profile.name} refuses"
        for x in node.split("/") if node else ():
            out.bad_nodes.add(x)
        if not node:
            out.pipeline_problems += 1
        out.problems.append(text)
        out.decisions.append(f"stores: no - {text}")
