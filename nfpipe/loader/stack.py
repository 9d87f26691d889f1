"""How much stack a linked program needs: the deepest chain of BPF-to-BPF calls, each
function's frame rounded as the verifier rounds it, summed.

The verifier refuses a program whose frames along any call chain add up to more than
512 bytes ("combined stack size of N calls is ... Too large", EACCES), and it finds
that out only after verifying the whole program, which for a fused pipeline can take
seconds.  Reading it off the instructions first lets the builder choose a layout that
fits (``compose.build``).

A function's frame is the deepest stack slot its instructions touch: a load or store
through r10 at a negative offset, or an address ``rX = r10; rX += -N`` taken of a
stack object (the object starts there).  That is what the compiler laid out; the
verifier counts the slots it saw written or read, which can only be fewer.
"""
from __future__ import annotations

from nfpipe.loader.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_LD,
    BPF_LDX,
    BPF_ST,
    BPF_STX,
    OP_CALL,
    PSEUDO_CALL,
    fields,
)
from nfpipe.loader.specs import ProgramSpec

MAX_STACK = 512               # MAX_BPF_STACK: all frames of one call chain
_FP = 10                      # r10, the frame pointer
_MOV64_X = 0xBF               # BPF_ALU64 | BPF_MOV | BPF_X
_ADD64_K = 0x07               # BPF_ALU64 | BPF_ADD | BPF_K


def _round(depth: int) -> int:
    """The verifier's rounding of a frame when the program is JIT-compiled."""
    return (depth + 15) // 16 * 16


def frames(prog: ProgramSpec) -> tuple[dict[int, int], dict[int, set[int]]]:
    """(frame bytes per function as the verifier reports them in its stats, before
    rounding; the functions each one calls), functions named by their
    first instruction (0: the program itself; the others from its BTF func_info and
    the call targets)."""
    insns = fields(prog.insns)
    n = len(insns)
    starts = {0} | {off for off, _ in prog.func_info}
    starts |= {i + imm + 1 for i, (op, _d, src, _o, imm) in enumerate(insns)
               if op == OP_CALL and src == PSEUDO_CALL}
    order = sorted(s for s in starts if 0 <= s < n)
    depth: dict[int, int] = {}
    calls: dict[int, set[int]] = {}
    for k, start in enumerate(order):
        end = order[k + 1] if k + 1 < len(order) else n
        deepest, fp_copies, callees = 0, set(), set()
        for i in range(start, end):
            op, dst, src, off, imm = insns[i]
            cls = op & 0x07
            if off < 0 and ((cls in (BPF_ST, BPF_STX) and dst == _FP) or
                            (cls == BPF_LDX and src == _FP)):
                deepest = max(deepest, -off)
            if op == _MOV64_X and src == _FP:
                fp_copies.add(dst)
            elif op == _ADD64_K and dst in fp_copies:
                deepest = max(deepest, -imm)
                fp_copies.discard(dst)
            elif cls in (BPF_LD, BPF_LDX, BPF_ALU, BPF_ALU64):
                fp_copies.discard(dst)                 # the register holds something else
            elif op == OP_CALL:
                fp_copies -= {0, 1, 2, 3, 4, 5}        # what a call clobbers
                if src == PSEUDO_CALL:
                    callees.add(i + imm + 1)
        depth[start], calls[start] = deepest, callees
    return depth, calls


def stack_depth(prog: ProgramSpec) -> int:
    """The bytes of stack the deepest call chain of *prog* takes (what the verifier
    holds to MAX_STACK)."""
    depth, calls = frames(prog)
    memo: dict[int, int] = {}

    def chain(f: int, seen: frozenset) -> int:
        if f in memo:
            return memo[f]
        below = [chain(c, seen | {f}) for c in calls.get(f, ()) if c not in seen and c in depth]
        memo[f] = _round(depth.get(f, 0)) + max(below, default=0)
        return memo[f]

    return chain(0, frozenset())
