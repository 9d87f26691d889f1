"""eBPF instructions as nfpipe's loader needs them: decode, classify, patch.

An instruction is 8 bytes: opcode, dst_reg:4|src_reg:4 (little-endian:
dst in the low nibble), a signed 16-bit offset and a signed 32-bit immediate.
``ld_imm64`` spans two slots; the second holds the upper 32 bits of the
immediate.  Only the handful of classes the loader rewrites are named here.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

INSN_SIZE = 8
_INSN = struct.Struct("<BBhi")

# opcode classes and the few opcodes the loader rewrites
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)
OP_LD_IMM64 = 0x18          # BPF_LD | BPF_IMM | BPF_DW
OP_CALL = 0x85              # BPF_JMP | BPF_CALL
OP_EXIT = 0x95              # BPF_JMP | BPF_EXIT

PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
PSEUDO_CALL = 1
PSEUDO_FUNC = 4
PSEUDO_KFUNC_CALL = 2


@dataclass(frozen=True)
class Insn:
    opcode: int
    dst: int
    src: int
    off: int
    imm: int

    @property
    def is_ld_imm64(self) -> bool:
        return self.opcode == OP_LD_IMM64

    @property
    def is_call(self) -> bool:
        return self.opcode == OP_CALL

    @property
    def is_subprog_call(self) -> bool:
        return self.opcode == OP_CALL and self.src == PSEUDO_CALL

    @property
    def is_helper_call(self) -> bool:
        return self.opcode == OP_CALL and self.src == 0

    def __str__(self) -> str:
        return (f"op={self.opcode:#04x} dst=r{self.dst} src=r{self.src} "
                f"off={self.off} imm={self.imm}")


def decode(buf: bytes | bytearray, index: int) -> Insn:
    op, regs, off, imm = _INSN.unpack_from(buf, index * INSN_SIZE)
    return Insn(op, regs & 0x0F, regs >> 4, off, imm)


def fields(buf: bytes | bytearray) -> list[tuple[int, int, int, int, int]]:
    """Every slot of *buf* as (opcode, dst, src, off, imm): decode without objects, for
    reading whole programs."""
    return [(op, regs & 0x0F, regs >> 4, off, imm) for op, regs, off, imm in _INSN.iter_unpack(buf)]


def count(buf: bytes | bytearray) -> int:
    return len(buf) // INSN_SIZE


def set_src(buf: bytearray, index: int, src: int) -> None:
    pos = index * INSN_SIZE + 1
    buf[pos] = (buf[pos] & 0x0F) | (src << 4)


def set_imm(buf: bytearray, index: int, imm: int) -> None:
    struct.pack_into("<i", buf, index * INSN_SIZE + 4, _s32(imm))


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def patch_map_fd(buf: bytearray, index: int, fd: int) -> None:
    """Turn the ld_imm64 at *index* into ``r = map_by_fd(fd)``."""
    set_src(buf, index, PSEUDO_MAP_FD)
    set_imm(buf, index, fd)
    set_imm(buf, index + 1, 0)


def patch_map_value(buf: bytearray, index: int, fd: int, offset: int) -> None:
    """Turn the ld_imm64 at *index* into ``r = &map_value(fd)[0] + offset``."""
    set_src(buf, index, PSEUDO_MAP_VALUE)
    set_imm(buf, index, fd)
    set_imm(buf, index + 1, offset)
