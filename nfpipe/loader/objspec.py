"""``ObjectSpec``: what a BPF ELF object declares, before anything is in the kernel.

Pure data, no file descriptors, deterministic for a given file: programs (already
linked with their subprograms; map references left symbolic), maps, global
variables.  It can be inspected (``nfpipe object show``), edited (``.rodata``
constants, map sizes) and copied before ``nfpipe.loader.Object.load`` turns it
into live objects.  ``from_file`` reads it with ``nfpipe.loader.elf``.

``from_file(path, memo=...)`` keeps the spec it read in a file beside the object
(the compile cache's ``<variant>.spec``): reading an ELF with pyelftools is 5-10 ms
an object, unpickling its spec 1-2.  The memo names the object's content hash,
``SPEC_FORMAT`` and a digest of the reader's own source, so an object rebuilt, a
format bumped or another nfpipe (the loader or BTF code changed) reads the ELF
again; a memo that cannot be read or does not hold an ObjectSpec is ignored and
rewritten.  It is trusted as the cached objects beside it are: the cache is the
user's own directory, and what it holds is loaded into the kernel anyway.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfpipe.btf import BTF, Codec
from nfpipe.errors import SpecError
from nfpipe.loader.elf import read_elf, read_elf_bytes
from nfpipe.loader.specs import MapSpec, ProgramSpec, VariableSpec

#: bump when what a memo holds changes in a way the code digest would not show
SPEC_FORMAT = 1
_MEMO_MAGIC = b"NFPSPEC\0"
# the modules whose code decides what a spec read from an ELF holds
_READER_MODULES = ("loader/elf.py", "loader/specs.py", "loader/objspec.py", "loader/insn.py",
                   "btf/__init__.py", "btf/btf.py", "btf/ext.py", "btf/types.py",
                   "btf/codec.py", "kernel/abi.py")


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
    def from_file(cls, path: str | os.PathLike, *,
                  memo: str | os.PathLike | None = None) -> ObjectSpec:
        """The spec of the ELF object at *path*; with *memo*, the file where the spec
        of this object's bytes is kept between processes (read when it holds this
        object's, else written after the ELF is read)."""
        path = os.fspath(path)
        if memo is None:
            return cls(**read_elf(path))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return cls(**read_elf(path))           # (read_elf's error names the file)
        key = _memo_key(data)
        spec = _read_memo(Path(memo), key) if key is not None else None
        if spec is None:
            spec = cls(**read_elf_bytes(data, path))
            if key is not None:
                _write_memo(Path(memo), key, spec)
        spec.path = path
        return spec

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


@functools.cache
def _reader_digest() -> bytes | None:
    """A digest of the reader's source: specs memoised by another nfpipe are not used."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    try:
        for rel in _READER_MODULES:
            h.update(rel.encode() + b"\0" + (root / rel).read_bytes())
    except OSError:
        return None                       # no source to hash: no memo
    return h.digest()


def _memo_key(data: bytes) -> bytes | None:
    code = _reader_digest()
    if code is None:
        return None
    h = hashlib.sha256(str(SPEC_FORMAT).encode() + b"\0" + code)
    h.update(hashlib.sha256(data).digest())
    return h.digest()


def _read_memo(memo: Path, key: bytes) -> ObjectSpec | None:
    """The spec kept in *memo* under *key*; None when there is none, it is another
    object's, or the file is damaged."""
    try:
        raw = memo.read_bytes()
    except OSError:
        return None
    head = _MEMO_MAGIC + key
    if not raw.startswith(head):
        return None
    try:
        spec = pickle.loads(raw[len(head):])
    except Exception:                  # a damaged memo: any unpickling error
        return None
    return spec if isinstance(spec, ObjectSpec) else None


def _write_memo(memo: Path, key: bytes, spec: ObjectSpec) -> None:
    """Keep *spec* in *memo* (atomically); a memo that cannot be written only costs time."""
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        payload = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.write_bytes(_MEMO_MAGIC + key + payload)
        os.replace(tmp, memo)
    except (OSError, pickle.PicklingError, TypeError, AttributeError, RecursionError):
        with contextlib.suppress(OSError):
            tmp.unlink()
