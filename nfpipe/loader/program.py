"""``Program``: a live BPF program, owning its fd; test-runnable in the kernel."""
from __future__ import annotations

import errno
import struct
from collections.abc import Mapping
from typing import Any

from nfpipe.errors import KernelError, SpecError
from nfpipe.kernel import abi, syscall as sc
from nfpipe.kernel.syscall import TestRunResult
from nfpipe.loader import insn as I
from nfpipe.loader.elf import kernel_object_name
from nfpipe.loader.fdobject import FdObject
from nfpipe.loader.specs import PROG_TYPE_NAMES, ProgramSpec
from nfpipe.loader.verifier import verifier_error

FUNC_INFO_REC = struct.Struct("<II")          # struct bpf_func_info
LINE_INFO_REC = struct.Struct("<IIII")        # struct bpf_line_info
_PACKET_TYPES = frozenset({abi.ProgType.XDP, abi.ProgType.SCHED_CLS, abi.ProgType.SCHED_ACT})

__all__ = ["Program", "TestRunResult", "link_instructions"]


def link_instructions(spec: ProgramSpec, maps: Mapping[str, Any]) -> bytes:
    """The program's instructions with every map reference replaced by the map's fd."""
    buf = bytearray(spec.insns)
    for r in spec.relocs:
        m = maps.get(r.map)
        if m is None:
            raise SpecError(f"program '{spec.name}' references map '{r.map}', which was not "
                            f"created", program=spec.name, section=spec.section,
                            offset=r.insn * I.INSN_SIZE)
        fd = int(m.fd)
        if r.kind == "map":
            I.patch_map_fd(buf, r.insn, fd)
        elif r.kind == "map_value":
            I.patch_map_value(buf, r.insn, fd, r.offset)
        else:
            raise SpecError(f"unknown relocation kind {r.kind!r}", program=spec.name)
    return bytes(buf)


class Program(FdObject):
    """A BPF program loaded into the kernel."""

    noun = "program"

    def __init__(self, fd: sc.Fd, *, name: str, type: int, spec: ProgramSpec | None = None):
        super().__init__(fd, name)
        self.type = type
        self.spec = spec
        self.verifier_log = ""           # filled by load(log_level > 0)

    @classmethod
    def load(cls, spec: ProgramSpec, maps: Mapping[str, Any], *, btf_fd=None,
             log_level: int = 0, ifindex: int = 0, kernel_name: str | None = None,
             node: str | None = None) -> Program:
        """Load *spec*, its map references resolved against *maps* (name → Map).

        A verifier rejection is a ``VerifierError`` naming the C source line.
        """
        insns = link_instructions(spec, maps)
        func_info = line_info = b""
        if btf_fd is not None:
            func_info = b"".join(FUNC_INFO_REC.pack(i, t) for i, t in spec.func_info)
            line_info = b"".join(LINE_INFO_REC.pack(li.insn, li.file_name_off, li.line_off,
                                                    li.line_col) for li in spec.line_info)
        try:
            fd, log = sc.prog_load(
                spec.type, insns, spec.license or "", name=kernel_name or
                kernel_object_name(spec.name), expected_attach_type=spec.expected_attach_type,
                prog_flags=spec.flags, prog_ifindex=ifindex,
                btf_fd=int(btf_fd) if btf_fd is not None else 0,
                func_info=func_info, func_info_rec_size=FUNC_INFO_REC.size if func_info else 0,
                line_info=line_info, line_info_rec_size=LINE_INFO_REC.size if line_info else 0,
                log_level=log_level)
        except sc.ProgLoadError as exc:
            if exc.log.strip():
                raise verifier_error(spec.name, exc.errno, exc.log, node=node) from None
            if exc.errno == errno.EINVAL and not spec.license:
                raise KernelError("BPF_PROG_LOAD", exc.errno,
                                  f"program '{spec.name}'",
                                  hint="the object has no license section; add "
                                       "char LICENSE[] SEC(\"license\") = \"GPL\";") from None
            raise
        prog = cls(fd, name=spec.name, type=spec.type, spec=spec)
        prog.verifier_log = log          # with log_level > 0: what the verifier said
        return prog

    @classmethod
    def from_fd(cls, fd: sc.Fd) -> Program:
        info = sc.prog_info(fd)
        name = info.name
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).split(b"\0", 1)[0].decode("ascii", "replace")
        return cls(fd, name=name, type=info.type)

    @classmethod
    def from_pin(cls, path: str) -> Program:
        p = cls.from_fd(sc.obj_get(path))
        p.pinned_at = path
        return p

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        return cls.from_fd(sc.prog_get_fd_by_id(prog_id))

    def __repr__(self) -> str:
        return f"<Program {self.name!r} {self.type_name} {self._state()}>"

    @property
    def type_name(self) -> str:
        return PROG_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def id(self) -> int:
        return sc.prog_info(self.fd).id

    def info(self):
        return sc.prog_info(self.fd)

    # --- running --------------------------------------------------------------------------

    def test_run(self, data: Any = b"", *, repeat: int = 1, ctx: bytes | None = None,
                 ctx_out_size: int = 0, flags: int = 0, cpu: int = 0,
                 batch_size: int = 0, data_out_size: int | None = None) -> TestRunResult:
        """Run the program in the kernel on *data* (bytes or a scapy packet).

        Returns ``TestRunResult(retval, data, ctx, duration_ns)``: the program's
        return code, the packet as the program left it, the output context, and
        the mean run time in ns over *repeat* runs.
        """
        payload = bytes(data)
        try:
            return sc.prog_test_run(self.fd, payload, data_out_size=data_out_size, ctx=ctx,
                                    ctx_out_size=ctx_out_size, repeat=repeat, flags=flags,
                                    cpu=cpu, batch_size=batch_size)
        except KernelError as exc:
            if exc.errno == errno.EINVAL and self.type in _PACKET_TYPES and len(payload) < 14:
                raise KernelError("BPF_PROG_TEST_RUN", exc.errno,
                                  f"program '{self.name}' got a {len(payload)}-byte packet",
                                  hint="XDP and TC test runs need at least a 14-byte "
                                       "Ethernet header") from None
            raise
