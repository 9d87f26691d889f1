"""What this kernel can do for nfpipe, found by trying (like ``bpftool feature probe``).

``probe_kernel`` tries each program
type is tried with a two-instruction program (``r0 = 0; exit``), each map type
by creating a tiny map, each helper nfpipe uses by loading a program of the
hook's type that calls it with valid arguments; bpf_link for XDP and tcx by a
trial attach to a veth pair made in a temporary, unnamed network namespace
(gone when the probe ends); XDP frags by loading with ``BPF_F_XDP_HAS_FRAGS``;
live frames by a test run that drops its frame; BTF by loading a one-type blob.
``offload_refusal(ifindex)`` and ``try_native(ifindex)`` are the per-device trials
the attach code and ``nfpipe probe`` share.  Nothing is left behind: every fd is closed.
"""
from __future__ import annotations

import errno as _errno
import functools
import os
import platform
import struct
from typing import Any

from nfpipe.attach.query import iproute
from nfpipe.errors import KernelError, errno_name
from nfpipe.kernel import abi, syscall as sc
from nfpipe.kernel.netns import temporary_netns

# --- hand-built instructions -------------------------------------------------------------

_I = struct.Struct("<BBhi")


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return _I.pack(code, (src << 4) | dst, off, imm)


def mov_imm(dst: int, imm: int) -> bytes:          # BPF_ALU64 | BPF_MOV | BPF_K
    return _insn(0xB7, dst, imm=imm)


def mov_reg(dst: int, src: int) -> bytes:          # BPF_ALU64 | BPF_MOV | BPF_X
    return _insn(0xBF, dst, src)


def add_imm(dst: int, imm: int) -> bytes:          # BPF_ALU64 | BPF_ADD | BPF_K
    return _insn(0x07, dst, imm=imm)


def st_dw(dst: int, off: int, imm: int) -> bytes:  # BPF_ST | BPF_MEM | BPF_DW
    return _insn(0x7A, dst, off=off, imm=imm)


def call(helper: int) -> bytes:                    # BPF_JMP | BPF_CALL
    return _insn(0x85, imm=helper)


def exit_() -> bytes:                               # BPF_JMP | BPF_EXIT
    return _insn(0x95)


def ld_map_fd(dst: int, fd: int) -> bytes:          # BPF_LD | BPF_IMM | BPF_DW, pseudo map fd
    return _insn(0x18, dst, abi.BPF_PSEUDO_MAP_FD, imm=fd) + _insn(0)


def ret(value: int) -> bytes:
    return mov_imm(0, value) + exit_()


PASS_XDP = ret(abi.XDP_PASS)
RET0 = ret(0)
R1, R2, R3, R4, R5, R6, R10 = 1, 2, 3, 4, 5, 6, 10

# helper ids (enum bpf_func_id, as in bpf/include/bpf/bpf_helper_defs.h)
HELPER_IDS = {
    "bpf_skb_store_bytes": 9, "bpf_l3_csum_replace": 10, "bpf_l4_csum_replace": 11,
    "bpf_tail_call": 12, "bpf_redirect": 23, "bpf_xdp_adjust_head": 44,
    "bpf_redirect_map": 51, "bpf_xdp_adjust_meta": 54, "bpf_xdp_adjust_tail": 65,
    "bpf_fib_lookup": 69, "bpf_ringbuf_output": 130, "bpf_xdp_get_buff_len": 188,
    "bpf_xdp_load_bytes": 189, "bpf_xdp_store_bytes": 190,
}


def _load(prog_type: int, insns: bytes, **kw) -> tuple[bool, str]:
    """(loaded?, reason): try a load and close the program at once."""
    try:
        fd, _ = sc.prog_load(prog_type, insns, "GPL", **kw)
    except sc.ProgLoadError as exc:
        return False, _load_reason(exc)
    except KernelError as exc:
        return False, f"{errno_name(exc.errno)}"
    fd.close()
    return True, ""


def _refusal(err: int) -> str:
    if err == _errno.EPERM:
        return "EPERM (refused before verification by a policy or capability check: " \
               "support unknown)"
    return errno_name(err)


def _load_reason(exc: sc.ProgLoadError) -> str:
    text = _refusal(exc.errno)
    why = sc.log_summary(exc.log, 160)
    return f"{text}: {why}" if why else text


# --- program types -----------------------------------------------------------------------

_PROG_TYPE_EXTRA: dict[int, dict[str, Any]] = {
    abi.ProgType.CGROUP_SOCK_ADDR: {"expected_attach_type": abi.AttachType.CGROUP_INET4_CONNECT},
    abi.ProgType.SK_LOOKUP: {"expected_attach_type": abi.AttachType.SK_LOOKUP},
    abi.ProgType.CGROUP_SOCKOPT: {"expected_attach_type": abi.AttachType.CGROUP_GETSOCKOPT},
    abi.ProgType.NETFILTER: {"expected_attach_type": abi.AttachType.NETFILTER},
    abi.ProgType.SYSCALL: {"prog_flags": abi.BPF_F_SLEEPABLE},
    abi.ProgType.TRACING: {"expected_attach_type": abi.AttachType.TRACE_FENTRY,
                           "attach_btf_id": 1},
    abi.ProgType.LSM: {"expected_attach_type": abi.AttachType.LSM_MAC, "attach_btf_id": 1},
    abi.ProgType.EXT: {"attach_btf_id": 1},
    abi.ProgType.STRUCT_OPS: {"attach_btf_id": 1},
}
# these need a real BTF attach target: a rejection that reached the verifier (a log) shows
# the kernel knows the type; an unknown type is refused before any log is written
_BTF_ATTACHED = {abi.ProgType.TRACING, abi.ProgType.LSM, abi.ProgType.EXT,
                 abi.ProgType.STRUCT_OPS}


def _kernel_version_code() -> int:
    parts = platform.release().split("-")[0].split(".")
    nums = [int(p) for p in parts[:3] if p.isdigit()] + [0, 0, 0]
    return (nums[0] << 16) + (nums[1] << 8) + min(nums[2], 255)


def probe_prog_types() -> dict[str, Any]:
    """Program type name → True, or the reason it did not load."""
    out: dict[str, Any] = {}
    for t in abi.ProgType:
        if t == abi.ProgType.UNSPEC:
            continue
        kw = dict(_PROG_TYPE_EXTRA.get(t, {}))
        if t == abi.ProgType.KPROBE:
            kw["kern_version"] = _kernel_version_code()
        if t in _BTF_ATTACHED:
            try:
                fd, _ = sc.prog_load(t, RET0, "GPL", log_level=1, **kw)
                fd.close()
                out[t.name.lower()] = True
            except sc.ProgLoadError as exc:
                out[t.name.lower()] = True if exc.log.strip() else _refusal(exc.errno)
            except KernelError as exc:
                out[t.name.lower()] = _refusal(exc.errno)
            continue
        ok, why = _load(t, RET0, **kw)
        out[t.name.lower()] = True if ok else why
    return out


# --- map types ---------------------------------------------------------------------------


def tiny_btf() -> bytes:
    """A BTF blob with one type: ``int`` (4 bytes, signed)."""
    strings = b"\0int\0"
    types = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def _map_params(t: int, page: int) -> dict[str, Any] | None:
    M = abi.MapType
    p: dict[str, Any] = {"key_size": 4, "value_size": 4, "max_entries": 1}
    if t in (M.LPM_TRIE,):
        p.update(key_size=8, value_size=8, flags=abi.BPF_F_NO_PREALLOC)
    elif t in (M.CGROUP_STORAGE, M.PERCPU_CGROUP_STORAGE):
        p.update(key_size=16, value_size=8, max_entries=0)   # struct bpf_cgroup_storage_key
    elif t in (M.QUEUE, M.STACK) or t == M.BLOOM_FILTER:
        p.update(key_size=0)
    elif t in (M.RINGBUF, M.USER_RINGBUF):
        p.update(key_size=0, value_size=0, max_entries=page)
    elif t == M.STACK_TRACE:
        p.update(value_size=8)
    elif t == M.ARENA:
        p.update(key_size=0, value_size=0, flags=abi.BPF_F_MMAPABLE)
    elif t in (M.SK_STORAGE, M.INODE_STORAGE, M.TASK_STORAGE, M.CGRP_STORAGE):
        p.update(max_entries=0, flags=abi.BPF_F_NO_PREALLOC, btf=True)
    elif t == M.STRUCT_OPS:
        return None                       # needs a vmlinux struct_ops value type
    elif t == M.INSN_ARRAY:
        p.update(value_size=8)
    return p


def probe_map_types() -> dict[str, Any]:
    """Map type name → True, the reason creation failed, or "not probed"."""
    page = os.sysconf("SC_PAGE_SIZE")
    out: dict[str, Any] = {}
    btf_fd = None
    try:
        try:
            btf_fd = sc.btf_load(tiny_btf())
        except KernelError:
            btf_fd = None
        seen = set()
        for t in abi.MapType:
            if t == abi.MapType.UNSPEC or int(t) in seen:
                continue
            seen.add(int(t))
            p = _map_params(t, page)
            name = t.name.lower()
            if p is None:
                out[name] = "not probed (needs a kernel struct_ops type)"
                continue
            kw: dict[str, Any] = {"flags": p.get("flags", 0)}
            inner = None
            if p.get("btf"):
                if btf_fd is None:
                    out[name] = "not probed (BTF does not load)"
                    continue
                kw.update(btf_fd=btf_fd, btf_key_type_id=1, btf_value_type_id=1)
            if t in (abi.MapType.ARRAY_OF_MAPS, abi.MapType.HASH_OF_MAPS):
                inner = sc.map_create(abi.MapType.ARRAY, 4, 4, 1)
                kw["inner_map_fd"] = inner
            try:
                fd = sc.map_create(t, p["key_size"], p["value_size"], p["max_entries"], **kw)
                fd.close()
                out[name] = True
            except KernelError as exc:
                out[name] = errno_name(exc.errno)
            finally:
                if inner is not None:
                    inner.close()
    finally:
        if btf_fd is not None:
            btf_fd.close()
    return out


# --- helpers -----------------------------------------------------------------------------


def _helper_program(name: str, maps: dict[str, sc.Fd]) -> tuple[int, bytes]:
    """(program type, instructions) calling helper *name* with valid arguments."""
    X, C = abi.ProgType.XDP, abi.ProgType.SCHED_CLS
    hid = HELPER_IDS[name]
    zero8 = st_dw(R10, -8, 0)
    buf8 = mov_reg(R3, R10) + add_imm(R3, -8)
    if name == "bpf_tail_call":
        return X, (mov_reg(R6, R1) + mov_reg(R1, R6) + ld_map_fd(R2, int(maps["prog_array"]))
                   + mov_imm(R3, 0) + call(hid) + ret(abi.XDP_PASS))
    if name == "bpf_redirect":
        return X, mov_imm(R1, 1) + mov_imm(R2, 0) + call(hid) + exit_()
    if name == "bpf_redirect_map":
        return X, (ld_map_fd(R1, int(maps["devmap"])) + mov_imm(R2, 0) + mov_imm(R3, 0)
                   + call(hid) + exit_())
    if name in ("bpf_xdp_adjust_head", "bpf_xdp_adjust_tail", "bpf_xdp_adjust_meta"):
        return X, mov_imm(R2, 0) + call(hid) + ret(abi.XDP_PASS)
    if name == "bpf_xdp_get_buff_len":
        return X, call(hid) + ret(abi.XDP_PASS)
    if name == "bpf_fib_lookup":
        # struct bpf_fib_lookup is 64 bytes: zero it on the stack, look up with flags 0
        zero = b"".join(st_dw(R10, -8 * i, 0) for i in range(1, 9))
        return X, (zero + mov_reg(R2, R10) + add_imm(R2, -64) + mov_imm(R3, 64)
                   + mov_imm(R4, 0) + call(hid) + ret(abi.XDP_PASS))
    if name == "bpf_ringbuf_output":
        return X, (zero8 + ld_map_fd(R1, int(maps["ringbuf"])) + mov_reg(R2, R10)
                   + add_imm(R2, -8) + mov_imm(R3, 8) + mov_imm(R4, 0) + call(hid)
                   + ret(abi.XDP_PASS))
    if name in ("bpf_xdp_load_bytes", "bpf_xdp_store_bytes"):
        return X, (zero8 + mov_imm(R2, 0) + buf8 + mov_imm(R4, 8) + call(hid)
                   + ret(abi.XDP_PASS))
    if name == "bpf_skb_store_bytes":
        return C, (zero8 + mov_imm(R2, 0) + buf8 + mov_imm(R4, 8) + mov_imm(R5, 0)
                   + call(hid) + ret(0))
    if name in ("bpf_l3_csum_replace", "bpf_l4_csum_replace"):
        return C, (mov_imm(R2, 0) + mov_imm(R3, 0) + mov_imm(R4, 0) + mov_imm(R5, 2)
                   + call(hid) + ret(0))
    raise KeyError(name)


def probe_helpers() -> dict[str, Any]:
    """Helper name → True, or why a program of its hook calling it did not load."""
    maps: dict[str, sc.Fd] = {}
    out: dict[str, Any] = {}
    try:
        for key, args in (("prog_array", (abi.MapType.PROG_ARRAY, 4, 4, 1)),
                          ("devmap", (abi.MapType.DEVMAP, 4, 4, 1)),
                          ("ringbuf", (abi.MapType.RINGBUF, 0, 0, os.sysconf("SC_PAGE_SIZE")))):
            try:
                maps[key] = sc.map_create(*args)
            except KernelError:
                pass
        for name in HELPER_IDS:
            try:
                prog_type, insns = _helper_program(name, maps)
            except KeyError:
                out[name] = "not probed (its map type is missing)"
                continue
            ok, why = _load(prog_type, insns, log_level=0)
            if ok:
                out[name] = True
            elif "unknown func" in why or "invalid func" in why:
                out[name] = "unknown to this kernel"
            elif "cannot" in why and "helper" in why:
                out[name] = f"not allowed for {abi.ProgType(prog_type).name.lower()}: {why}"
            else:
                out[name] = why
    finally:
        for fd in maps.values():
            fd.close()
    return out


# --- links, frags, BTF, JIT --------------------------------------------------------------


@functools.cache
def probe_link_support() -> dict[str, Any]:
    """XDP bpf_link and tcx, tried on a veth pair in a temporary network namespace."""
    out: dict[str, Any] = {"xdp_link": None, "tcx": None, "veth_native_xdp": None}
    try:
        xdp, _ = sc.prog_load(abi.ProgType.XDP, PASS_XDP, "GPL", name="nfp_probe")
        tc, _ = sc.prog_load(abi.ProgType.SCHED_CLS, RET0, "GPL", name="nfp_probe")
    except KernelError as exc:
        return {k: f"probe programs do not load ({errno_name(exc.errno)})" for k in out}
    try:
        with temporary_netns():
            with iproute() as ipr:
                ipr.link("add", ifname="nfp0", kind="veth", peer={"ifname": "nfp1"})
                index = ipr.link_lookup(ifname="nfp0")[0]
            for key, attach, flags, prog in (
                    ("xdp_link", abi.AttachType.XDP, 0, xdp),
                    ("veth_native_xdp", abi.AttachType.XDP, abi.XDP_FLAGS_DRV_MODE, xdp),
                    ("tcx", abi.AttachType.TCX_INGRESS, 0, tc)):
                try:
                    sc.link_create(prog, index, attach, flags=flags).close()
                    out[key] = True
                except KernelError as exc:
                    out[key] = errno_name(exc.errno)
    except Exception as exc:    # no veth module, no netns: say so rather than guess
        for k, v in out.items():
            if v is None:
                out[k] = f"not probed ({exc})"
    finally:
        xdp.close()
        tc.close()
    return out


def probe_xdp_frags() -> Any:
    ok, why = _load(abi.ProgType.XDP, PASS_XDP, prog_flags=abi.BPF_F_XDP_HAS_FRAGS)
    return True if ok else why


@functools.cache
def probe_live_frames() -> Any:
    """Whether BPF_PROG_TEST_RUN sends live frames (BPF_F_TEST_XDP_LIVE_FRAMES, what
    ``nfpipe bench --live`` generates traffic with): True, or the refusal.  Tried with
    a program that drops its one frame, so nothing is sent.  Some sandboxed kernels
    refuse it (EPERM) while running every other test run."""
    try:
        fd, _ = sc.prog_load(abi.ProgType.XDP, ret(abi.XDP_DROP), "GPL", name="nfp_probe")
    except KernelError as exc:
        return f"not probed ({errno_name(exc.errno)})"
    try:
        sc.prog_test_run(fd, bytes(64), repeat=1, flags=abi.BPF_F_TEST_XDP_LIVE_FRAMES)
        return True
    except KernelError as exc:
        return errno_name(exc.errno)
    finally:
        fd.close()


def probe_btf() -> Any:
    try:
        sc.btf_load(tiny_btf()).close()
        return True
    except KernelError as exc:
        return errno_name(exc.errno)


def jit_state() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("bpf_jit_enable", "bpf_jit_harden", "bpf_jit_kallsyms"):
        try:
            with open(f"/proc/sys/net/core/{key}") as f:
                out[key.removeprefix("bpf_")] = int(f.read().strip())
        except (OSError, ValueError):
            out[key.removeprefix("bpf_")] = None
    try:
        with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
            out["unprivileged_bpf_disabled"] = int(f.read().strip())
    except (OSError, ValueError):
        out["unprivileged_bpf_disabled"] = None
    return out


def probe_kernel() -> dict[str, Any]:
    """Everything the kernel side offers nfpipe (see the module docstring)."""
    u = os.uname()
    return {
        "release": u.release, "version": u.version, "machine": u.machine,
        "btf_vmlinux": os.path.exists("/sys/kernel/btf/vmlinux"),
        "jit": jit_state(),
        "btf": probe_btf(),
        "xdp_frags": probe_xdp_frags(),
        "xdp_live_frames": probe_live_frames(),
        "links": dict(probe_link_support()),
        "helpers": probe_helpers(),
        "program_types": probe_prog_types(),
        "map_types": probe_map_types(),
    }


# --- per-device trials --------------------------------------------------------------------


def try_native(index: int) -> Any:
    try:
        fd, _ = sc.prog_load(abi.ProgType.XDP, PASS_XDP, "GPL", name="nfp_probe")
    except KernelError as exc:
        return f"not tried: probe program does not load ({errno_name(exc.errno)})"
    with fd:
        try:
            sc.link_create(fd, index, abi.AttachType.XDP, flags=abi.XDP_FLAGS_DRV_MODE).close()
            return True
        except KernelError as exc:
            if exc.errno in (_errno.EEXIST, _errno.EBUSY):
                return "not tried: a program got attached meanwhile"
            return f"no ({errno_name(exc.errno)})"


def offload_refusal(index: int) -> str | None:
    """The errno name with which a trial load of ``r0 = XDP_PASS; exit`` bound to device
    *index* (this thread's namespace) fails: why it cannot take offloaded programs.
    None if it accepts them."""
    try:
        fd, _ = sc.prog_load(abi.ProgType.XDP, PASS_XDP, "GPL", name="nfp_probe",
                             prog_ifindex=index)
    except KernelError as exc:
        return errno_name(exc.errno)
    fd.close()
    return None
