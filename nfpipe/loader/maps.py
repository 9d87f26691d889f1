"""``Map``: a live BPF map, owning its fd, used like a dict from Python.

Keys and values are encoded with codecs built from the map's BTF types (ints,
dicts for structs, bytes for byte arrays; see ``nfpipe.btf.codec``); a map with
no BTF takes and returns raw ``bytes``.  Per-CPU maps return one value per
possible CPU and accept either such a list or one value for every CPU.
"""
from __future__ import annotations

import mmap
import os
from array import array
from collections.abc import Iterator
from typing import Any

from nfpipe.btf import BTF, Codec
from nfpipe.btf.codec import IntCodec
from nfpipe.errors import KernelError, SpecError
from nfpipe.kernel import abi, syscall as sc
from nfpipe.loader.fdobject import FdObject
from nfpipe.loader.specs import MAP_IN_MAP_TYPES, MAP_TYPE_NAMES, PERCPU_MAP_TYPES, MapSpec

M = abi.MapType
# Map types whose kernel implementation refuses BTF key/value types (their
# map_check_btf rejects it); nfpipe still keeps the types for its own codecs.
_NO_KERNEL_BTF = frozenset({
    M.PROG_ARRAY, M.PERF_EVENT_ARRAY, M.STACK_TRACE, M.CGROUP_ARRAY, M.ARRAY_OF_MAPS,
    M.HASH_OF_MAPS, M.DEVMAP, M.DEVMAP_HASH, M.CPUMAP, M.XSKMAP, M.SOCKMAP, M.SOCKHASH,
    M.QUEUE, M.STACK, M.RINGBUF, M.USER_RINGBUF, M.ARENA})
# Maps whose values user space writes as file descriptors.
_FD_VALUE_TYPES = frozenset({
    M.PROG_ARRAY, M.PERF_EVENT_ARRAY, M.CGROUP_ARRAY, M.ARRAY_OF_MAPS, M.HASH_OF_MAPS,
    M.DEVMAP, M.DEVMAP_HASH, M.CPUMAP, M.XSKMAP, M.SOCKMAP, M.SOCKHASH})
_NO_KEY_TYPES = frozenset({M.QUEUE, M.STACK, M.RINGBUF, M.USER_RINGBUF, M.BLOOM_FILTER})
# Maps indexed by a plain __u32 slot: their keys read as ints even without BTF.
_INDEXED_TYPES = frozenset({
    M.ARRAY, M.PERCPU_ARRAY, M.PROG_ARRAY, M.PERF_EVENT_ARRAY, M.CGROUP_ARRAY,
    M.ARRAY_OF_MAPS, M.DEVMAP, M.CPUMAP, M.XSKMAP})
_ARRAY_TYPES = frozenset({M.ARRAY, M.PERCPU_ARRAY})
BPF_ANY, BPF_NOEXIST, BPF_EXIST = abi.BPF_ANY, abi.BPF_NOEXIST, abi.BPF_EXIST


def _round8(n: int) -> int:
    return (n + 7) & ~7


class Map(FdObject):
    """A BPF map in the kernel."""

    noun = "map"

    def __init__(self, fd: sc.Fd, *, name: str, type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int = 0, key_codec=None, value_codec=None,
                 spec: MapSpec | None = None):
        super().__init__(fd, name)
        self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.spec = spec
        self.key_codec = key_codec or Codec.raw(key_size)
        self.value_codec = value_codec or Codec.raw(value_size)
        self.device = 0                  # ifindex of the device it is bound to (offload)
        self.typed = spec is not None    # keys/values decode by their types (BTF)

    @property
    def memory(self) -> int:
        """Bytes of memory the kernel charges to this map (its fdinfo ``memlock``): what a
        table of a million entries really costs, as the kernel counts it."""
        return int(sc.fdinfo(self.fd).get("memlock", 0))

    # --- construction -----------------------------------------------------------

    @classmethod
    def create(cls, spec: MapSpec, *, btf_fd: sc.Fd | int | None = None,
               inner_fd: sc.Fd | int | None = None, kernel_name: str | None = None,
               ifindex: int = 0) -> Map:
        """Create the map *spec* describes (its contents are not written here)."""
        use_btf = btf_fd is not None and spec.type not in _NO_KERNEL_BTF
        inner_tmp = None
        try:
            if spec.type in MAP_IN_MAP_TYPES and inner_fd is None:
                if spec.inner is None:
                    raise SpecError(f"map '{spec.name}' is a map-in-map without an inner map "
                                    f"definition")
                inner_tmp = cls.create(spec.inner, btf_fd=btf_fd, kernel_name="inner_tmpl")
                inner_fd = inner_tmp.fd
            try:
                fd = sc.map_create(
                    spec.type, spec.key_size, spec.value_size, spec.max_entries,
                    flags=spec.flags, name=kernel_name if kernel_name is not None else spec.name,
                    inner_map_fd=int(inner_fd) if inner_fd is not None else 0,
                    numa_node=spec.numa_node, ifindex=ifindex, map_extra=spec.map_extra,
                    btf_fd=int(btf_fd) if use_btf and btf_fd is not None else 0,
                    btf_key_type_id=spec.key_type_id if use_btf else 0,
                    btf_value_type_id=spec.value_type_id if use_btf else 0)
            except KernelError as exc:
                exc.args = (f"creating map '{spec.name}' ({spec.type_name}, key {spec.key_size} "
                            f"B, value {spec.value_size} B, {spec.max_entries} entries): "
                            f"{exc.args[0]}",)
                raise
        finally:
            if inner_tmp is not None:
                inner_tmp.close()
        key_codec, value_codec = _codecs(spec)
        return cls(fd, name=spec.name, type=spec.type, key_size=spec.key_size,
                   value_size=spec.value_size, max_entries=spec.max_entries, flags=spec.flags,
                   key_codec=key_codec, value_codec=value_codec, spec=spec)

    def dup(self) -> Map:
        """The same kernel map on a new fd of its own (closing either leaves the other)."""
        return type(self)(sc.Fd(os.dup(int(self.fd))), name=self.name, type=self.type,
                          key_size=self.key_size, value_size=self.value_size,
                          max_entries=self.max_entries, flags=self.flags,
                          key_codec=self.key_codec, value_codec=self.value_codec,
                          spec=self.spec)

    def use_types(self, spec: MapSpec) -> None:
        """Decode keys and values as *spec* types them (its BTF): for a map the kernel
        keeps no types of, such as a device-bound one (offload devices take no BTF)."""
        if (spec.key_size, spec.value_size) != (self.key_size, self.value_size):
            raise SpecError(f"map '{self.name}' has key/value {self.key_size}/"
                            f"{self.value_size} B, not the {spec.key_size}/{spec.value_size} "
                            f"B of the definition given for it")
        self.key_codec, self.value_codec = _codecs(spec)
        self.spec = spec

    @classmethod
    def from_fd(cls, fd: sc.Fd, *, spec: MapSpec | None = None) -> Map:
        """Wrap an fd obtained elsewhere (pin, id); types come from *spec* or the kernel's BTF."""
        info = sc.map_info(fd)
        name = abi.cstr(info.name)
        key_codec = value_codec = None
        if spec is not None:
            key_codec, value_codec = _codecs(spec)
        else:
            key_codec, value_codec = _kernel_btf_codecs(info)
        m = cls(fd, name=spec.name if spec else name, type=info.type,
                key_size=info.key_size, value_size=info.value_size,
                max_entries=info.max_entries, flags=info.map_flags,
                key_codec=key_codec, value_codec=value_codec, spec=spec)
        m.device = info.ifindex          # bound to this device (offload), or 0
        m.typed = spec is not None or key_codec is not None or value_codec is not None
        return m

    @classmethod
    def from_pin(cls, path: str, *, spec: MapSpec | None = None) -> Map:
        m = cls.from_fd(sc.obj_get(path), spec=spec)
        m.pinned_at = path
        return m

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        return cls.from_fd(sc.map_get_fd_by_id(map_id))

    def __repr__(self) -> str:
        return (f"<Map {self.name!r} {self.type_name} key={self.key_size} "
                f"value={self.value_size} max_entries={self.max_entries} {self._state()}>")

    @property
    def definition(self) -> tuple[int, int, int, int, int]:
        """(type, key size, value size, max_entries, flags): what must match for a
        program built for one map to use another."""
        return (self.type, self.key_size, self.value_size, self.max_entries, self.flags)

    @property
    def type_name(self) -> str:
        return MAP_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def percpu(self) -> bool:
        return self.type in PERCPU_MAP_TYPES

    @property
    def dumpable(self) -> bool:
        """Whether iterating the map lists meaningful entries (not fds, not a queue)."""
        return self.type not in _NO_KEY_TYPES and self.type not in _FD_VALUE_TYPES

    @property
    def id(self) -> int:
        return sc.map_info(self.fd).id

    def freeze(self) -> None:
        sc.map_freeze(self.fd)

    # --- encoding ---------------------------------------------------------------------

    def _key(self, key: Any) -> bytes:
        try:
            return self.key_codec.encode(key)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"map '{self.name}': bad key {key!r}: {exc}") from None

    def _value(self, value: Any) -> bytes:
        if self.type in _FD_VALUE_TYPES and not isinstance(value, (bytes, bytearray)):
            return int(_fd_of(value)).to_bytes(4, "little")
        if not self.percpu:
            try:
                return self.value_codec.encode(value)
            except (ValueError, TypeError, OverflowError) as exc:
                raise ValueError(f"map '{self.name}': bad value {value!r}: {exc}") from None
        ncpu = sc.possible_cpus()
        values = value if isinstance(value, (list, tuple)) else [value] * ncpu
        if len(values) != ncpu:
            raise ValueError(f"map '{self.name}' is per-CPU: give one value or a list of "
                             f"{ncpu} (one per possible CPU), not {len(values)}")
        slot = _round8(self.value_size)
        out = bytearray()
        for v in values:
            out += self.value_codec.encode(v).ljust(slot, b"\0")
        return bytes(out)

    def _decode_value(self, raw: bytes) -> Any:
        if not self.percpu:
            return self.value_codec.decode(raw[:self.value_size])
        slot = _round8(self.value_size)
        return [self.value_codec.decode(raw[i:i + self.value_size])
                for i in range(0, len(raw), slot)]

    @property
    def _value_buf_size(self) -> int:
        if self.percpu:
            return _round8(self.value_size) * sc.possible_cpus()
        return self.value_size

    # --- dict interface ---------------------------------------------------------------

    def lookup(self, key: Any) -> Any | None:
        raw = sc.map_lookup_elem(self.fd, self._key(key), self._value_buf_size)
        return None if raw is None else self._decode_value(raw)

    def __getitem__(self, key: Any) -> Any:
        value = self.lookup(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        value = self.lookup(key)
        return default if value is None else value

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        sc.map_update_elem(self.fd, self._key(key), self._value(value), flags)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def delete(self, key: Any) -> bool:
        """Delete *key*; False when it was not there."""
        return sc.map_delete_elem(self.fd, self._key(key))

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        return self.lookup(key) is not None

    def raw_keys(self) -> Iterator[bytes]:
        if self.type in _NO_KEY_TYPES:
            raise TypeError(f"map '{self.name}' ({self.type_name}) has no keys to iterate")
        key = None
        while True:
            key = sc.map_get_next_key(self.fd, key, self.key_size)
            if key is None:
                return
            yield key

    def keys(self) -> Iterator[Any]:
        for raw in self.raw_keys():
            yield self.key_codec.decode(raw)

    __iter__ = keys

    def items(self) -> Iterator[tuple[Any, Any]]:
        for raw in self.raw_keys():
            value = sc.map_lookup_elem(self.fd, raw, self._value_buf_size)
            if value is not None:        # deleted while we iterated
                yield self.key_codec.decode(raw), self._decode_value(value)

    def values(self) -> Iterator[Any]:
        for _k, v in self.items():
            yield v

    def __len__(self) -> int:
        return sum(1 for _ in self.raw_keys())

    def clear(self) -> None:
        """Delete every entry (arrays cannot delete: their values are zeroed instead)."""
        if self.type in _ARRAY_TYPES:
            zero = bytes(self._value_buf_size)
            for raw in list(self.raw_keys()):
                sc.map_update_elem(self.fd, raw, zero, BPF_ANY)
            return
        for raw in list(self.raw_keys()):
            sc.map_delete_elem(self.fd, raw)

    def to_dict(self) -> dict:
        return {_hashable(k): v for k, v in self.items()}

    # --- writing a run of an array ------------------------------------------------------

    @property
    def mappable(self) -> bool:
        """An array made with BPF_F_MMAPABLE: its values can be written through mmap."""
        return self.type == M.ARRAY and bool(self.flags & abi.BPF_F_MMAPABLE)

    def write_run(self, first: int, values: bytes | memoryview, count: int) -> None:
        """Elements *first* .. first + count - 1 of an array from *values*, their values
        of value_size bytes laid end to end.  A mappable array takes them as one copy
        into its memory (each element at an 8-byte-rounded stride, as the kernel lays
        an array out); any other in batches of map_update_batch."""
        if count <= 0:
            return
        size = self.value_size
        if len(values) != count * size:
            raise ValueError(f"map '{self.name}': {len(values)} bytes are not {count} "
                             f"values of {size} B")
        if first < 0 or first + count > self.max_entries:
            raise ValueError(f"map '{self.name}': elements {first}..{first + count - 1} "
                             f"of {self.max_entries}")
        stride = _round8(size)
        if self.mappable and (size == stride or size == 4):
            length = self.max_entries * stride
            with mmap.mmap(int(self.fd), length, mmap.MAP_SHARED,
                           mmap.PROT_READ | mmap.PROT_WRITE) as mem:
                view = memoryview(mem)
                try:
                    if size == stride:
                        view[first * size:(first + count) * size] = values
                    else:                     # u32 values, each in 8 bytes
                        words = view.cast("I")
                        try:
                            words[2 * first:2 * (first + count):2] = \
                                memoryview(values).cast("I")
                        finally:
                            words.release()
                finally:
                    view.release()
            return
        chunk = 1 << 16
        raw = memoryview(values)
        for i in range(0, count, chunk):
            n = min(chunk, count - i)
            keys = array("I", range(first + i, first + i + n)).tobytes()
            sc.map_update_batch_packed(self.fd, keys, raw[i * size:(i + n) * size], n)


def _hashable(key: Any) -> Any:
    if isinstance(key, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in key.items()))
    if isinstance(key, list):
        return tuple(_hashable(v) for v in key)
    return key


def _fd_of(value: Any) -> int:
    if isinstance(value, int):
        return value
    fd = getattr(value, "fd", value)
    return int(fd)


def _codecs(spec: MapSpec):
    btf = spec.btf
    if btf is not None and spec.key_type_id:
        key = Codec.for_type(btf, spec.key_type_id)
    elif spec.key_size == 4 and spec.type in _INDEXED_TYPES:
        key = IntCodec("__u32", 4, False)
    else:
        key = Codec.raw(spec.key_size)
    if btf is not None and spec.value_type_id:
        value = Codec.for_type(btf, spec.value_type_id)
    elif spec.value_size == 4 and spec.type in _FD_VALUE_TYPES:
        value = IntCodec("__u32", 4, False)     # user space reads back object ids
    else:
        value = Codec.raw(spec.value_size)
    return key, value


def _kernel_btf_codecs(info):
    """Codecs from the BTF the kernel keeps for a map (what bpftool uses to pretty-print)."""
    if not getattr(info, "btf_id", 0) or not (info.btf_key_type_id or info.btf_value_type_id):
        return None, None
    try:
        btf = kernel_btf(info.btf_id)
    except (KernelError, SpecError):
        return None, None
    key = Codec.for_type(btf, info.btf_key_type_id) if info.btf_key_type_id else None
    value = Codec.for_type(btf, info.btf_value_type_id) if info.btf_value_type_id else None
    return key, value


#: BTF objects parsed lately, by id: every map of a program shares its BTF object
#: (a filter node's 17 maps, parsed 17 times a node opened), which the kernel never
#: changes, and ids are allocated cyclically (one is not reused before 2^31 more)
_KERNEL_BTF: dict[int, BTF] = {}
_KERNEL_BTF_KEPT = 16


def kernel_btf(btf_id: int):
    """Parse the BTF object *btf_id* as the kernel holds it."""
    btf = _KERNEL_BTF.get(btf_id)
    if btf is None:
        with sc.btf_get_fd_by_id(btf_id) as fd:
            btf = BTF.parse(sc.btf_data(fd))
        while len(_KERNEL_BTF) >= _KERNEL_BTF_KEPT:
            del _KERNEL_BTF[next(iter(_KERNEL_BTF))]
        _KERNEL_BTF[btf_id] = btf
    return btf

