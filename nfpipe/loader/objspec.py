"""``ObjectSpec``: what a BPF ELF object declares, before anything is in the kernel.

Pure data, no file descriptors, deterministic for a given file: programs (already
linked with their subprograms; map references left symbolic), maps, global
variables.  It can be inspected (``nfpipe object show``), edited (``.rodata``
constants, map sizes) and copied before ``nfpipe.loader.Object.load`` turns it
into live objects.  ``from_file`` reads it with ``nfpipe.loader.elf``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from nfpipe.btf import BTF, Codec
from nfpipe.errors import SpecError
from nfpipe.loader.elf import read_elf, read_elf_bytes
from nfpipe.loader.specs import MapSpec, ProgramSpec, VariableSpec


@dataclass
class ObjectSpec:
    """Everything one BPF ELF object declares: programs, maps, global variables."""

    programs: dict[str, ProgramSpec]
    maps: dict[str, MapSpec]
    variables: dict[str, VariableSpec]
    license: str
    btf: BTF | None = field(default=None, repr=False, compare=False)
    path: str | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ObjectSpec:
        return cls(**read_elf(os.fspath(path)))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> ObjectSpec:
        return cls(**read_elf_bytes(data, name))

    def copy(self) -> ObjectSpec:
        """A deep enough copy that edits (constants, map sizes) leave self alone."""
        return ObjectSpec(
            programs={k: v.copy() for k, v in self.programs.items()},
            maps={k: v.copy() for k, v in self.maps.items()},
            variables=dict(self.variables), license=self.license, btf=self.btf,
            path=self.path)

    # --- global variables -------------------------------------------------

    def _variable(self, name: str) -> VariableSpec:
        try:
            return self.variables[name]
        except KeyError:
            known = ", ".join(sorted(self.variables)) or "none"
            raise SpecError(f"no global variable '{name}' in this object (it has: {known})",
                            file=self.path) from None

    def get_variable(self, name: str) -> Any:
        var = self._variable(name)
        data = self.maps[var.section].data or b""
        raw = data[var.offset:var.offset + var.size]
        return self._codec(var).decode(raw)

    def set_variable(self, name: str, value: Any) -> None:
        """Set a global variable's initial value (``.rodata``: the constant the verifier sees)."""
        var = self._variable(name)
        m = self.maps[var.section]
        try:
            raw = self._codec(var).encode(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise SpecError(f"cannot set '{name}' to {value!r}: {exc}", file=self.path) from None
        buf = bytearray(m.data or bytes(m.value_size))
        buf[var.offset:var.offset + var.size] = raw
        m.data = bytes(buf)

    def set_constant(self, name: str, value: Any) -> None:
        """Set a ``const volatile`` variable in ``.rodata`` before load."""
        var = self._variable(name)
        if not var.constant:
            raise SpecError(f"'{name}' lives in {var.section}, not .rodata: it is not a "
                            f"load-time constant (set it with set_variable or through its map "
                            f"after load)", file=self.path)
        self.set_variable(name, value)

    def _codec(self, var: VariableSpec):
        if self.btf is None or not var.type_id:
            return Codec.raw(var.size)
        return Codec.for_type(self.btf, var.type_id)
