"""``Object``: every map and program of one ObjectSpec, loaded together.

Load order: BTF → maps (global data written, ``.rodata`` frozen; pinned maps
reused) → programs (map references patched with fds) → initial contents of
prog arrays and map-in-maps.  If any step fails, every fd created so far is
closed and every pin made so far removed, so nothing is left in the kernel.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nfpipe.errors import KernelError, SpecError
from nfpipe.kernel import syscall as sc
from nfpipe.loader.elf import kernel_object_name
from nfpipe.loader.maps import Map
from nfpipe.loader.objspec import ObjectSpec
from nfpipe.loader.program import Program
from nfpipe.loader.specs import MAP_IN_MAP_TYPES, PROG_ARRAY, MapSpec


class Object:
    """A loaded BPF object: ``.maps`` and ``.programs`` by name, closed together."""

    def __init__(self, spec: ObjectSpec, maps: dict[str, Map], programs: dict[str, Program],
                 btf_fd: sc.Fd | None, shared: frozenset[str] = frozenset()):
        self.spec = spec
        self.maps = maps
        self.programs = programs
        self._btf_fd = btf_fd
        self._shared = shared          # maps handed in by the caller: not ours to close

    @classmethod
    def load(cls, spec: ObjectSpec | str | os.PathLike, *,
             constants: Mapping[str, Any] | None = None, pin_dir: str | None = None,
             log_level: int = 0, name: str | None = None,
             programs: list[str] | None = None,
             maps: Mapping[str, Map] | None = None,
             kernel_names: Callable[[str, str], str] | None = None,
             ifindex: int = 0,
             on_maps: Callable[[dict[str, Map]], None] | None = None) -> Object:
        """Load *spec* (an ObjectSpec or the path of a BPF ELF object).

        ``constants`` sets ``.rodata`` variables before load; ``pin_dir`` is where
        maps declared with ``pinning = LIBBPF_PIN_BY_NAME`` are pinned (or reused
        when a compatible pin exists); ``programs`` limits which programs load;
        ``maps`` replaces maps of the object by existing ones (same name, compatible
        definition), which is how the programs of one pipeline share maps.  Replaced
        maps stay the caller's: ``close()`` leaves them open.  ``kernel_names(kind,
        name)`` ("map" or "program") gives the name the kernel (and bpftool) shows
        for each (default: the object's own names, cut to 15 bytes).  ``ifindex``
        binds every program and map to that device (hardware offload: prog_ifindex,
        map_ifindex); such an object may have no global data, which offload devices
        cannot give programs direct access to (nfpipe's offload build compiles its
        constants in).  ``on_maps(maps)`` is called once every map exists, before the
        first program is loaded (the verifier's part): another thread may start
        loading programs on them then; they stay this object's (closed if this load
        fails), so such a caller holds its own fds of them (``Map.dup``).
        """
        if not isinstance(spec, ObjectSpec):
            spec = ObjectSpec.from_file(spec)
        if constants:
            spec = spec.copy()
            for key, value in constants.items():
                spec.set_constant(key, value)
        prefix = _object_prefix(name or (Path(spec.path).stem if spec.path else ""))
        if ifindex:
            data = sorted(m.name for m in spec.maps.values() if m.is_global_data)
            if data:
                raise SpecError(f"cannot load for offload to ifindex {ifindex}: the object "
                                f"has global data ({', '.join(data)}), and the kernel gives "
                                f"device-bound programs no direct value access to it "
                                f"(compile constants in: nfpipe's offload build)",
                                file=spec.path)
        loader = _Loader(spec, prefix, pin_dir, log_level, dict(maps or {}), kernel_names)
        loader.ifindex = ifindex
        loader.on_maps = on_maps
        try:
            return loader.run(programs)
        except BaseException:
            loader.rollback()
            raise

    def close(self) -> None:
        for p in self.programs.values():
            p.close()
        for name, m in self.maps.items():
            if name not in self._shared:
                m.close()
        if self._btf_fd is not None:
            self._btf_fd.close()

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Object {self.spec.path or ''} programs={list(self.programs)} "
                f"maps={list(self.maps)}>")

    @property
    def btf_fd(self) -> sc.Fd | None:
        return self._btf_fd


def _object_prefix(stem: str) -> str:
    """Short prefix for kernel names of global-data maps ("filter.rodata")."""
    clean = "".join(c for c in stem if c.isalnum() or c == "_")
    return clean[:7]


class _Loader:
    def __init__(self, spec: ObjectSpec, prefix: str, pin_dir: str | None, log_level: int,
                 shared: dict[str, Map], kernel_names: Callable[[str, str], str] | None):
        unknown = set(shared) - set(spec.maps)
        if unknown:
            raise SpecError(f"cannot replace map(s) {', '.join(sorted(unknown))}: the object "
                            f"has no such map", file=spec.path)
        self.shared = shared
        self.kernel_names = kernel_names
        self.spec = spec
        self.prefix = prefix
        self.pin_dir = pin_dir
        self.log_level = log_level
        self.btf_fd: sc.Fd | None = None
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        self.new_pins: list[str] = []
        self.ifindex = 0                  # hardware offload: the device everything binds to
        self.on_maps: Callable[[dict[str, Map]], None] | None = None

    def run(self, only: list[str] | None) -> Object:
        self._load_btf()
        for name, mspec in self.spec.maps.items():
            if name in self.shared:
                _check_compatible(self.shared[name], mspec, "the replacement map",
                                  close=False)
                self.maps[name] = self.shared[name]
            else:
                self.maps[name] = self._map(mspec)
        if self.on_maps is not None:
            self.on_maps(dict(self.maps))
        wanted = only if only is not None else list(self.spec.programs)
        for pname in wanted:
            if pname not in self.spec.programs:
                raise SpecError(f"no program '{pname}' in this object (it has: "
                                f"{', '.join(self.spec.programs)})", file=self.spec.path)
            kname = self.kernel_names("program", pname) if self.kernel_names else None
            self.programs[pname] = Program.load(self.spec.programs[pname], self.maps,
                                                btf_fd=self.btf_fd, log_level=self.log_level,
                                                kernel_name=kname, ifindex=self.ifindex)
        self._initial_contents()
        return Object(self.spec, self.maps, self.programs, self.btf_fd,
                      frozenset(self.shared))

    def rollback(self) -> None:
        for p in self.programs.values():
            p.close()
        for name, m in self.maps.items():
            if name not in self.shared:
                m.close()
        if self.btf_fd is not None:
            self.btf_fd.close()
        for path in self.new_pins:
            try:
                os.unlink(path)
            except OSError:
                pass

    def _load_btf(self) -> None:
        if self.spec.btf is None:
            return
        try:
            self.btf_fd = sc.btf_load(self.spec.btf.encode())
        except sc.BtfLoadError as exc:
            log = exc.log.strip().splitlines()
            tail = "; ".join(log[-3:]) if log else ""
            raise KernelError("BPF_BTF_LOAD", exc.errno,
                              f"the kernel rejected the object's BTF ({tail})") from None

    def _map(self, mspec: MapSpec) -> Map:
        if self.kernel_names is not None:
            kname = self.kernel_names("map", mspec.name)
        elif mspec.is_global_data:
            kname = kernel_object_name(mspec.name, self.prefix)
        else:
            kname = kernel_object_name(mspec.name)
        if mspec.pinning == MapSpec.PIN_BY_NAME and self.pin_dir:
            path = os.path.join(self.pin_dir, mspec.name)
            if os.path.exists(path):
                m = Map.from_pin(path, spec=mspec)
                _check_compatible(m, mspec, f"the map pinned at {path}")
                return m
        # a map bound to a device takes no BTF types (the kernel's offload map ops check
        # for none: ENOTSUPP); nfpipe still decodes its values with the object's BTF
        m = Map.create(mspec, btf_fd=None if self.ifindex else self.btf_fd, kernel_name=kname,
                       ifindex=self.ifindex)
        self.maps[mspec.name] = m        # owned from here on, even if the next steps fail
        if mspec.is_global_data:
            m.update(0, mspec.data)
            if mspec.freeze:
                m.freeze()
        if mspec.pinning == MapSpec.PIN_BY_NAME and self.pin_dir:
            path = os.path.join(self.pin_dir, mspec.name)
            m.pin(path)
            self.new_pins.append(path)
        return m

    def _initial_contents(self) -> None:
        for name, mspec in self.spec.maps.items():
            for key, target in mspec.contents:
                if mspec.type == PROG_ARRAY:
                    prog = self.programs.get(target)
                    if prog is None:
                        continue            # not loaded (programs= filter)
                    self.maps[name][key] = prog
                elif mspec.type in MAP_IN_MAP_TYPES:
                    self.maps[name][key] = self.maps[target]
                else:
                    self.maps[name][key] = target


def _check_compatible(m: Map, spec: MapSpec, what: str, close: bool = True) -> None:
    want = (spec.type, spec.key_size, spec.value_size, spec.max_entries, spec.flags)
    have = (m.type, m.key_size, m.value_size, m.max_entries, m.flags)
    if want != have:
        if close:
            m.close()
        raise SpecError(f"{what} does not match map '{spec.name}' of the object: it has "
                        f"(type, key, value, max_entries, flags) = {have}, the object "
                        f"declares {want}")
