"""The bpf() syscall ABI: every constant and ctypes layout nfpipe hands to the kernel.

This module is the only place that knows the binary layout of ``union bpf_attr``
and of the ``bpf_*_info`` structs.  Names follow ``include/uapi/linux/bpf.h``:
module-level constants keep their C names (``BPF_F_NO_PREALLOC``,
``XDP_FLAGS_SKB_MODE``); enum members drop the common C prefix
(``Cmd.MAP_CREATE`` is ``BPF_MAP_CREATE``, ``MapType.HASH`` is
``BPF_MAP_TYPE_HASH``, ``AttachType.TCX_INGRESS`` is ``BPF_TCX_INGRESS``).
Struct fields keep their C names, and C's anonymous unions/structs are ctypes
``_anonymous_`` members, so ``attr.target_ifindex`` reads like it does in C.

``tests/unit/test_abi_layout.py`` compiles a C program against the UAPI header
and checks every size, offset and constant here against it.
"""
from __future__ import annotations

import ctypes
from ctypes import c_char, c_int16, c_int32, c_uint8, c_uint32, c_uint64
from enum import IntEnum

u8, u32, u64, s16, s32 = c_uint8, c_uint32, c_uint64, c_int16, c_int32

# --- syscall number ---------------------------------------------------------------------

#: ``__NR_bpf`` per ``platform.machine()``.
SYS_BPF_BY_MACHINE = {"x86_64": 321, "aarch64": 280, "arm64": 280}

# --- enums ------------------------------------------------------------------------------


class Cmd(IntEnum):
    """``enum bpf_cmd`` (C name: ``BPF_`` + member name)."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_TEST_RUN = 10
    PROG_RUN = 10
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    PROG_QUERY = 16
    RAW_TRACEPOINT_OPEN = 17
    BTF_LOAD = 18
    BTF_GET_FD_BY_ID = 19
    TASK_FD_QUERY = 20
    MAP_LOOKUP_AND_DELETE_ELEM = 21
    MAP_FREEZE = 22
    BTF_GET_NEXT_ID = 23
    MAP_LOOKUP_BATCH = 24
    MAP_LOOKUP_AND_DELETE_BATCH = 25
    MAP_UPDATE_BATCH = 26
    MAP_DELETE_BATCH = 27
    LINK_CREATE = 28
    LINK_UPDATE = 29
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    ENABLE_STATS = 32
    ITER_CREATE = 33
    LINK_DETACH = 34
    PROG_BIND_MAP = 35
    TOKEN_CREATE = 36
    PROG_STREAM_READ_BY_FD = 37
    PROG_ASSOC_STRUCT_OPS = 38


class MapType(IntEnum):
    """``enum bpf_map_type`` (C name: ``BPF_MAP_TYPE_`` + member name)."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    CGROUP_STORAGE_DEPRECATED = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    PERCPU_CGROUP_STORAGE_DEPRECATED = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33
    INSN_ARRAY = 34
    RHASH = 35


class ProgType(IntEnum):
    """``enum bpf_prog_type`` (C name: ``BPF_PROG_TYPE_`` + member name)."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


class AttachType(IntEnum):
    """``enum bpf_attach_type`` (C name: ``BPF_`` + member name)."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53
    NETKIT_PRIMARY = 54
    NETKIT_PEER = 55
    TRACE_KPROBE_SESSION = 56
    TRACE_UPROBE_SESSION = 57
    TRACE_FSESSION = 58          # this and below: newer than Linux 6.18
    TRACE_FENTRY_MULTI = 59
    TRACE_FEXIT_MULTI = 60
    TRACE_FSESSION_MULTI = 61


class LinkType(IntEnum):
    """``enum bpf_link_type`` (C name: ``BPF_LINK_TYPE_`` + member name)."""

    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8
    STRUCT_OPS = 9
    NETFILTER = 10
    TCX = 11
    UPROBE_MULTI = 12
    NETKIT = 13
    SOCKMAP = 14
    TRACING_MULTI = 15           # newer than Linux 6.18


class XdpAction(IntEnum):
    """``enum xdp_action`` (C name: ``XDP_`` + member name)."""

    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4


class TcAction(IntEnum):
    """``TC_ACT_*`` of ``linux/pkt_cls.h`` (C name: ``TC_ACT_`` + member name)."""

    UNSPEC = -1
    OK = 0
    RECLASSIFY = 1
    SHOT = 2
    PIPE = 3
    STOLEN = 4
    QUEUED = 5
    REPEAT = 6
    REDIRECT = 7
    TRAP = 8


class StatsType(IntEnum):
    """``enum bpf_stats_type`` (C name: ``BPF_STATS_`` + member name)."""

    RUN_TIME = 0


#: C-name prefix of each enum's members, for code that prints or checks C names.
ENUM_C_PREFIX = {
    Cmd: "BPF_", MapType: "BPF_MAP_TYPE_", ProgType: "BPF_PROG_TYPE_", AttachType: "BPF_",
    LinkType: "BPF_LINK_TYPE_", XdpAction: "XDP_", TcAction: "TC_ACT_", StatsType: "BPF_STATS_",
}

# --- plain constants --------------------------------------------------------------------

BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8
BPF_FS_MAGIC = 0xCAFE4A11

# XDP / TC program return codes, also as plain names.
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 0, 1, 2, 3, 4
TC_ACT_UNSPEC = -1
TC_ACT_OK = 0
TC_ACT_RECLASSIFY = 1
TC_ACT_SHOT = 2
TC_ACT_PIPE = 3
TC_ACT_STOLEN = 4
TC_ACT_QUEUED = 5
TC_ACT_REPEAT = 6
TC_ACT_REDIRECT = 7
TC_ACT_TRAP = 8
# enum tcx_action_base: what a tcx program returns
TCX_NEXT = -1
TCX_PASS = 0
TCX_DROP = 2
TCX_REDIRECT = 7

# BPF_MAP_*_ELEM flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4
BPF_F_CPU = 8           # newer than 6.18: the upper 32 bits of flags select a CPU
BPF_F_ALL_CPUS = 16     # newer than 6.18

# BPF_MAP_CREATE map_flags (and BPF_OBJ_GET / *_GET_FD_BY_ID file flags)
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_CLONE = 1 << 9
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12
BPF_F_LINK = 1 << 13
BPF_F_PATH_FD = 1 << 14
BPF_F_VTYPE_BTF_OBJ_FD = 1 << 15
BPF_F_TOKEN_FD = 1 << 16
BPF_F_SEGV_ON_FAULT = 1 << 17
BPF_F_NO_USER_CONV = 1 << 18
BPF_F_RB_OVERWRITE = 1 << 19   # newer than 6.18

# BPF_PROG_LOAD prog_flags
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_F_TEST_STATE_FREQ = 1 << 3
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5
BPF_F_XDP_DEV_BOUND_ONLY = 1 << 6
BPF_F_TEST_REG_INVARIANTS = 1 << 7

# BPF_PROG_ATTACH / BPF_LINK_CREATE (mprog: tcx, netkit) flags
BPF_F_ALLOW_OVERRIDE = 1 << 0
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2
BPF_F_BEFORE = 1 << 3
BPF_F_AFTER = 1 << 4
BPF_F_ID = 1 << 5
BPF_F_PREORDER = 1 << 6

# BPF_PROG_QUERY
BPF_F_QUERY_EFFECTIVE = 1 << 0

# BPF_PROG_TEST_RUN
BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2

# XDP attach flags (BPF_LINK_CREATE flags for BPF_XDP, IFLA_XDP_FLAGS in netlink)
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
XDP_FLAGS_MODES = XDP_FLAGS_SKB_MODE | XDP_FLAGS_DRV_MODE | XDP_FLAGS_HW_MODE
XDP_FLAGS_MASK = XDP_FLAGS_UPDATE_IF_NOEXIST | XDP_FLAGS_MODES | XDP_FLAGS_REPLACE

# src_reg of ld_imm64 / call instructions
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

# Verifier log levels (include/linux/bpf_verifier.h: kernel-internal, not in the UAPI).
BPF_LOG_LEVEL1 = 1
BPF_LOG_LEVEL2 = 2
BPF_LOG_STATS = 4
BPF_LOG_FIXED = 8

# errno the bpf() syscall returns for "not supported" (include/linux/errno.h, kernel-internal;
# os.strerror does not know it).
ENOTSUPP = 524

#: Module-level constants above that are not in the UAPI headers (the layout test skips them).
KERNEL_INTERNAL_CONSTANTS = frozenset({"BPF_LOG_LEVEL1", "BPF_LOG_LEVEL2", "BPF_LOG_STATS",
                                       "BPF_LOG_FIXED", "ENOTSUPP"})

# --- helpers for layouts ----------------------------------------------------------------


class _S(ctypes.Structure):
    """Base of the native-layout structs: adds a readable repr of the named fields."""

    def __repr__(self) -> str:
        parts = []
        for name, *_ in self._fields_:
            if name.startswith("_"):
                continue
            v = getattr(self, name)
            if isinstance(v, (ctypes.Structure, ctypes.Union)):
                continue
            parts.append(f"{name}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def cstr(raw: bytes | bytearray) -> str:
    """A NUL-terminated C char array as str."""
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


class _RelativeFdOrId(ctypes.Union):
    _fields_ = [("relative_fd", u32), ("relative_id", u32)]


class _TargetFdOrIfindex(ctypes.Union):
    _fields_ = [("target_fd", u32), ("target_ifindex", u32)]


# --- union bpf_attr members -------------------------------------------------------------


class MapCreateAttr(_S):
    """BPF_MAP_CREATE."""

    _fields_ = [
        ("map_type", u32),
        ("key_size", u32),
        ("value_size", u32),
        ("max_entries", u32),
        ("map_flags", u32),
        ("inner_map_fd", u32),
        ("numa_node", u32),
        ("map_name", c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", u32),
        ("btf_fd", u32),
        ("btf_key_type_id", u32),
        ("btf_value_type_id", u32),
        ("btf_vmlinux_value_type_id", u32),
        ("map_extra", u64),
        ("value_type_btf_obj_fd", s32),
        ("map_token_fd", s32),
        ("excl_prog_hash", u64),
        ("excl_prog_hash_size", u32),
    ]


class _ValueOrNextKey(ctypes.Union):
    _fields_ = [("value", u64), ("next_key", u64)]


class MapElemAttr(_S):
    """BPF_MAP_{LOOKUP,UPDATE,DELETE}_ELEM, GET_NEXT_KEY, LOOKUP_AND_DELETE_ELEM, FREEZE."""

    _anonymous_ = ("_u",)
    _fields_ = [
        ("map_fd", u32),
        ("key", u64),
        ("_u", _ValueOrNextKey),
        ("flags", u64),
    ]


class MapBatchAttr(_S):
    """BPF_MAP_*_BATCH (``attr.batch``)."""

    _fields_ = [
        ("in_batch", u64),
        ("out_batch", u64),
        ("keys", u64),
        ("values", u64),
        ("count", u32),
        ("map_fd", u32),
        ("elem_flags", u64),
        ("flags", u64),
    ]


class _AttachProgOrBtfObj(ctypes.Union):
    _fields_ = [("attach_prog_fd", u32), ("attach_btf_obj_fd", u32)]


class ProgLoadAttr(_S):
    """BPF_PROG_LOAD."""

    _anonymous_ = ("_u",)
    _fields_ = [
        ("prog_type", u32),
        ("insn_cnt", u32),
        ("insns", u64),
        ("license", u64),
        ("log_level", u32),
        ("log_size", u32),
        ("log_buf", u64),
        ("kern_version", u32),
        ("prog_flags", u32),
        ("prog_name", c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", u32),
        ("expected_attach_type", u32),
        ("prog_btf_fd", u32),
        ("func_info_rec_size", u32),
        ("func_info", u64),
        ("func_info_cnt", u32),
        ("line_info_rec_size", u32),
        ("line_info", u64),
        ("line_info_cnt", u32),
        ("attach_btf_id", u32),
        ("_u", _AttachProgOrBtfObj),
        ("core_relo_cnt", u32),
        ("fd_array", u64),
        ("core_relos", u64),
        ("core_relo_rec_size", u32),
        ("log_true_size", u32),
        ("prog_token_fd", s32),
        ("fd_array_cnt", u32),
        ("signature", u64),
        ("signature_size", u32),
        ("keyring_id", s32),
    ]


class ObjAttr(_S):
    """BPF_OBJ_PIN / BPF_OBJ_GET."""

    _fields_ = [
        ("pathname", u64),
        ("bpf_fd", u32),
        ("file_flags", u32),
        ("path_fd", s32),
    ]


class ProgAttachAttr(_S):
    """BPF_PROG_ATTACH / BPF_PROG_DETACH."""

    _anonymous_ = ("_t", "_r")
    _fields_ = [
        ("_t", _TargetFdOrIfindex),
        ("attach_bpf_fd", u32),
        ("attach_type", u32),
        ("attach_flags", u32),
        ("replace_bpf_fd", u32),
        ("_r", _RelativeFdOrId),
        ("expected_revision", u64),
    ]


class TestRunAttr(_S):
    """BPF_PROG_TEST_RUN (``attr.test``)."""

    __test__ = False  # not a pytest test class
    _fields_ = [
        ("prog_fd", u32),
        ("retval", u32),
        ("data_size_in", u32),
        ("data_size_out", u32),
        ("data_in", u64),
        ("data_out", u64),
        ("repeat", u32),
        ("duration", u32),
        ("ctx_size_in", u32),
        ("ctx_size_out", u32),
        ("ctx_in", u64),
        ("ctx_out", u64),
        ("flags", u32),
        ("cpu", u32),
        ("batch_size", u32),
    ]


class _StartOrObjId(ctypes.Union):
    _fields_ = [("start_id", u32), ("prog_id", u32), ("map_id", u32), ("btf_id", u32),
                ("link_id", u32)]


class GetIdAttr(_S):
    """BPF_*_GET_NEXT_ID / BPF_*_GET_FD_BY_ID."""

    _anonymous_ = ("_u",)
    _fields_ = [
        ("_u", _StartOrObjId),
        ("next_id", u32),
        ("open_flags", u32),
        ("fd_by_id_token_fd", s32),
    ]


class InfoAttr(_S):
    """BPF_OBJ_GET_INFO_BY_FD (``attr.info``)."""

    _fields_ = [
        ("bpf_fd", u32),
        ("info_len", u32),
        ("info", u64),
    ]


class _ProgCntOrCount(ctypes.Union):
    _fields_ = [("prog_cnt", u32), ("count", u32)]


class ProgQueryAttr(_S):
    """BPF_PROG_QUERY (``attr.query``)."""

    _anonymous_ = ("_t", "_c")
    _fields_ = [
        ("_t", _TargetFdOrIfindex),
        ("attach_type", u32),
        ("query_flags", u32),
        ("attach_flags", u32),
        ("prog_ids", u64),
        ("_c", _ProgCntOrCount),
        ("_pad0", u32),
        ("prog_attach_flags", u64),
        ("link_ids", u64),
        ("link_attach_flags", u64),
        ("revision", u64),
    ]


class BtfLoadAttr(_S):
    """BPF_BTF_LOAD."""

    _fields_ = [
        ("btf", u64),
        ("btf_log_buf", u64),
        ("btf_size", u32),
        ("btf_log_size", u32),
        ("btf_log_level", u32),
        ("btf_log_true_size", u32),
        ("btf_flags", u32),
        ("btf_token_fd", s32),
    ]


# link_create's per-attach-type part


class _LinkIterInfo(ctypes.Structure):
    _fields_ = [("iter_info", u64), ("iter_info_len", u32)]


class _LinkPerfEvent(ctypes.Structure):
    _fields_ = [("bpf_cookie", u64)]


class _LinkKprobeMulti(ctypes.Structure):
    _fields_ = [("flags", u32), ("cnt", u32), ("syms", u64), ("addrs", u64), ("cookies", u64)]


class _LinkTracing(ctypes.Structure):
    _fields_ = [("target_btf_id", u32), ("cookie", u64)]


class _LinkNetfilter(ctypes.Structure):
    _fields_ = [("pf", u32), ("hooknum", u32), ("priority", s32), ("flags", u32)]


class LinkRelativeAttr(ctypes.Structure):
    """The tcx / netkit / cgroup part of BPF_LINK_CREATE: where to insert, which revision."""

    _anonymous_ = ("_r",)
    _fields_ = [("_r", _RelativeFdOrId), ("expected_revision", u64)]


class _LinkUprobeMulti(ctypes.Structure):
    _fields_ = [("path", u64), ("offsets", u64), ("ref_ctr_offsets", u64), ("cookies", u64),
                ("cnt", u32), ("flags", u32), ("pid", u32), ("path_fd", u32)]


class _LinkTracingMulti(ctypes.Structure):
    _fields_ = [("ids", u64), ("cookies", u64), ("cnt", u32)]


class _LinkCreateTail(ctypes.Union):
    _anonymous_ = ("_iter",)
    _fields_ = [
        ("target_btf_id", u32),
        ("_iter", _LinkIterInfo),
        ("perf_event", _LinkPerfEvent),
        ("kprobe_multi", _LinkKprobeMulti),
        ("tracing", _LinkTracing),
        ("netfilter", _LinkNetfilter),
        ("tcx", LinkRelativeAttr),
        ("uprobe_multi", _LinkUprobeMulti),
        ("netkit", LinkRelativeAttr),
        ("cgroup", LinkRelativeAttr),
        ("tracing_multi", _LinkTracingMulti),
    ]


class _ProgOrMapFd(ctypes.Union):
    _fields_ = [("prog_fd", u32), ("map_fd", u32)]


class LinkCreateAttr(_S):
    """BPF_LINK_CREATE (``attr.link_create``)."""

    _anonymous_ = ("_p", "_t", "_tail")
    _fields_ = [
        ("_p", _ProgOrMapFd),
        ("_t", _TargetFdOrIfindex),
        ("attach_type", u32),
        ("flags", u32),
        ("_tail", _LinkCreateTail),
    ]


class _NewProgOrMap(ctypes.Union):
    _fields_ = [("new_prog_fd", u32), ("new_map_fd", u32)]


class _OldProgOrMap(ctypes.Union):
    _fields_ = [("old_prog_fd", u32), ("old_map_fd", u32)]


class LinkUpdateAttr(_S):
    """BPF_LINK_UPDATE (``attr.link_update``)."""

    _anonymous_ = ("_n", "_o")
    _fields_ = [
        ("link_fd", u32),
        ("_n", _NewProgOrMap),
        ("flags", u32),
        ("_o", _OldProgOrMap),
    ]


class LinkDetachAttr(_S):
    """BPF_LINK_DETACH (``attr.link_detach``)."""

    _fields_ = [("link_fd", u32)]


class EnableStatsAttr(_S):
    """BPF_ENABLE_STATS (``attr.enable_stats``)."""

    _fields_ = [("type", u32)]


class IterCreateAttr(_S):
    """BPF_ITER_CREATE (``attr.iter_create``)."""

    _fields_ = [("link_fd", u32), ("flags", u32)]


class ProgBindMapAttr(_S):
    """BPF_PROG_BIND_MAP (``attr.prog_bind_map``)."""

    _fields_ = [("prog_fd", u32), ("map_fd", u32), ("flags", u32)]


class TokenCreateAttr(_S):
    """BPF_TOKEN_CREATE (``attr.token_create``)."""

    _fields_ = [("flags", u32), ("bpffs_fd", u32)]


class BpfAttr(ctypes.Union):
    """``union bpf_attr``: the members above, named or anonymous as in C."""

    _anonymous_ = ("_map_create", "_map_elem", "_prog_load", "_obj", "_prog_attach",
                   "_get_id", "_btf_load")
    _fields_ = [
        ("_map_create", MapCreateAttr),
        ("_map_elem", MapElemAttr),
        ("batch", MapBatchAttr),
        ("_prog_load", ProgLoadAttr),
        ("_obj", ObjAttr),
        ("_prog_attach", ProgAttachAttr),
        ("test", TestRunAttr),
        ("_get_id", GetIdAttr),
        ("info", InfoAttr),
        ("query", ProgQueryAttr),
        ("_btf_load", BtfLoadAttr),
        ("link_create", LinkCreateAttr),
        ("link_update", LinkUpdateAttr),
        ("link_detach", LinkDetachAttr),
        ("enable_stats", EnableStatsAttr),
        ("iter_create", IterCreateAttr),
        ("prog_bind_map", ProgBindMapAttr),
        ("token_create", TokenCreateAttr),
    ]


#: The struct each command takes (what nfpipe.kernel.syscall passes to bpf()).
ATTR_OF_CMD = {
    Cmd.MAP_CREATE: MapCreateAttr,
    Cmd.MAP_LOOKUP_ELEM: MapElemAttr, Cmd.MAP_UPDATE_ELEM: MapElemAttr,
    Cmd.MAP_DELETE_ELEM: MapElemAttr, Cmd.MAP_GET_NEXT_KEY: MapElemAttr,
    Cmd.MAP_LOOKUP_AND_DELETE_ELEM: MapElemAttr, Cmd.MAP_FREEZE: MapElemAttr,
    Cmd.MAP_LOOKUP_BATCH: MapBatchAttr, Cmd.MAP_LOOKUP_AND_DELETE_BATCH: MapBatchAttr,
    Cmd.MAP_UPDATE_BATCH: MapBatchAttr, Cmd.MAP_DELETE_BATCH: MapBatchAttr,
    Cmd.PROG_LOAD: ProgLoadAttr,
    Cmd.OBJ_PIN: ObjAttr, Cmd.OBJ_GET: ObjAttr,
    Cmd.PROG_ATTACH: ProgAttachAttr, Cmd.PROG_DETACH: ProgAttachAttr,
    Cmd.PROG_TEST_RUN: TestRunAttr,
    Cmd.PROG_GET_NEXT_ID: GetIdAttr, Cmd.MAP_GET_NEXT_ID: GetIdAttr,
    Cmd.LINK_GET_NEXT_ID: GetIdAttr, Cmd.BTF_GET_NEXT_ID: GetIdAttr,
    Cmd.PROG_GET_FD_BY_ID: GetIdAttr, Cmd.MAP_GET_FD_BY_ID: GetIdAttr,
    Cmd.LINK_GET_FD_BY_ID: GetIdAttr, Cmd.BTF_GET_FD_BY_ID: GetIdAttr,
    Cmd.OBJ_GET_INFO_BY_FD: InfoAttr,
    Cmd.PROG_QUERY: ProgQueryAttr,
    Cmd.BTF_LOAD: BtfLoadAttr,
    Cmd.LINK_CREATE: LinkCreateAttr, Cmd.LINK_UPDATE: LinkUpdateAttr,
    Cmd.LINK_DETACH: LinkDetachAttr,
    Cmd.ENABLE_STATS: EnableStatsAttr, Cmd.ITER_CREATE: IterCreateAttr,
    Cmd.PROG_BIND_MAP: ProgBindMapAttr, Cmd.TOKEN_CREATE: TokenCreateAttr,
}

# --- info structs (BPF_OBJ_GET_INFO_BY_FD) ----------------------------------------------


class BpfProgInfo(_S):
    """``struct bpf_prog_info``."""

    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("tag", u8 * BPF_TAG_SIZE),
        ("jited_prog_len", u32),
        ("xlated_prog_len", u32),
        ("jited_prog_insns", u64),
        ("xlated_prog_insns", u64),
        ("load_time", u64),
        ("created_by_uid", u32),
        ("nr_map_ids", u32),
        ("map_ids", u64),
        ("name", c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", u32),
        ("gpl_compatible", u32, 1),
        ("_pad_gpl", u32, 31),
        ("netns_dev", u64),
        ("netns_ino", u64),
        ("nr_jited_ksyms", u32),
        ("nr_jited_func_lens", u32),
        ("jited_ksyms", u64),
        ("jited_func_lens", u64),
        ("btf_id", u32),
        ("func_info_rec_size", u32),
        ("func_info", u64),
        ("nr_func_info", u32),
        ("nr_line_info", u32),
        ("line_info", u64),
        ("jited_line_info", u64),
        ("nr_jited_line_info", u32),
        ("line_info_rec_size", u32),
        ("jited_line_info_rec_size", u32),
        ("nr_prog_tags", u32),
        ("prog_tags", u64),
        ("run_time_ns", u64),
        ("run_cnt", u64),
        ("recursion_misses", u64),
        ("verified_insns", u32),
        ("attach_btf_obj_id", u32),
        ("attach_btf_id", u32),
        ("_pad_end", u32),
    ]

    @property
    def name_str(self) -> str:
        return cstr(self.name)

    @property
    def tag_hex(self) -> str:
        return bytes(self.tag).hex()


class BpfMapInfo(_S):
    """``struct bpf_map_info``."""

    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("key_size", u32),
        ("value_size", u32),
        ("max_entries", u32),
        ("map_flags", u32),
        ("name", c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", u32),
        ("btf_vmlinux_value_type_id", u32),
        ("netns_dev", u64),
        ("netns_ino", u64),
        ("btf_id", u32),
        ("btf_key_type_id", u32),
        ("btf_value_type_id", u32),
        ("btf_vmlinux_id", u32),
        ("map_extra", u64),
        ("hash", u64),
        ("hash_size", u32),
        ("_pad_end", u32),
    ]

    @property
    def name_str(self) -> str:
        return cstr(self.name)


class BpfBtfInfo(_S):
    """``struct bpf_btf_info``."""

    _fields_ = [
        ("btf", u64),
        ("btf_size", u32),
        ("id", u32),
        ("name", u64),
        ("name_len", u32),
        ("kernel_btf", u32),
    ]


class _LinkInfoRawTp(ctypes.Structure):
    _fields_ = [("tp_name", u64), ("tp_name_len", u32), ("_pad0", u32), ("cookie", u64)]


class _LinkInfoTracing(ctypes.Structure):
    _fields_ = [("attach_type", u32), ("target_obj_id", u32), ("target_btf_id", u32),
                ("_pad0", u32), ("cookie", u64)]


class _LinkInfoCgroup(ctypes.Structure):
    _fields_ = [("cgroup_id", u64), ("attach_type", u32)]


class _LinkInfoIterMap(ctypes.Structure):
    _fields_ = [("map_id", u32)]


class _LinkInfoIterU1(ctypes.Union):
    _fields_ = [("map", _LinkInfoIterMap)]


class _LinkInfoIterCgroup(ctypes.Structure):
    _fields_ = [("cgroup_id", u64), ("order", u32)]


class _LinkInfoIterTask(ctypes.Structure):
    _fields_ = [("tid", u32), ("pid", u32)]


class _LinkInfoIterU2(ctypes.Union):
    _fields_ = [("cgroup", _LinkInfoIterCgroup), ("task", _LinkInfoIterTask)]


class _LinkInfoIter(ctypes.Structure):
    _anonymous_ = ("_u1", "_u2")
    _fields_ = [("target_name", u64), ("target_name_len", u32), ("_u1", _LinkInfoIterU1),
                ("_u2", _LinkInfoIterU2)]


class _LinkInfoNetns(ctypes.Structure):
    _fields_ = [("netns_ino", u32), ("attach_type", u32)]


class _LinkInfoXdp(ctypes.Structure):
    _fields_ = [("ifindex", u32)]


class _LinkInfoStructOps(ctypes.Structure):
    _fields_ = [("map_id", u32)]


class _LinkInfoNetfilter(ctypes.Structure):
    _fields_ = [("pf", u32), ("hooknum", u32), ("priority", s32), ("flags", u32)]


class _LinkInfoKprobeMulti(ctypes.Structure):
    _fields_ = [("addrs", u64), ("count", u32), ("flags", u32), ("missed", u64),
                ("cookies", u64)]


class _LinkInfoUprobeMulti(ctypes.Structure):
    _fields_ = [("path", u64), ("offsets", u64), ("ref_ctr_offsets", u64), ("cookies", u64),
                ("path_size", u32), ("count", u32), ("flags", u32), ("pid", u32)]


class _PerfUprobe(ctypes.Structure):
    _fields_ = [("file_name", u64), ("name_len", u32), ("offset", u32), ("cookie", u64),
                ("ref_ctr_offset", u64)]


class _PerfKprobe(ctypes.Structure):
    _fields_ = [("func_name", u64), ("name_len", u32), ("offset", u32), ("addr", u64),
                ("missed", u64), ("cookie", u64)]


class _PerfTracepoint(ctypes.Structure):
    _fields_ = [("tp_name", u64), ("name_len", u32), ("_pad0", u32), ("cookie", u64)]


class _PerfEvent(ctypes.Structure):
    _fields_ = [("config", u64), ("type", u32), ("_pad0", u32), ("cookie", u64)]


class _LinkInfoPerfU(ctypes.Union):
    _fields_ = [("uprobe", _PerfUprobe), ("kprobe", _PerfKprobe),
                ("tracepoint", _PerfTracepoint), ("event", _PerfEvent)]


class _LinkInfoPerfEvent(ctypes.Structure):
    _anonymous_ = ("_u",)
    _fields_ = [("type", u32), ("_pad0", u32), ("_u", _LinkInfoPerfU)]


class _LinkInfoIfindexAttach(ctypes.Structure):
    _fields_ = [("ifindex", u32), ("attach_type", u32)]


class _LinkInfoSockmap(ctypes.Structure):
    _fields_ = [("map_id", u32), ("attach_type", u32)]


class _LinkInfoU(ctypes.Union):
    _fields_ = [
        ("raw_tracepoint", _LinkInfoRawTp),
        ("tracing", _LinkInfoTracing),
        ("cgroup", _LinkInfoCgroup),
        ("iter", _LinkInfoIter),
        ("netns", _LinkInfoNetns),
        ("xdp", _LinkInfoXdp),
        ("struct_ops", _LinkInfoStructOps),
        ("netfilter", _LinkInfoNetfilter),
        ("kprobe_multi", _LinkInfoKprobeMulti),
        ("uprobe_multi", _LinkInfoUprobeMulti),
        ("perf_event", _LinkInfoPerfEvent),
        ("tcx", _LinkInfoIfindexAttach),
        ("netkit", _LinkInfoIfindexAttach),
        ("sockmap", _LinkInfoSockmap),
    ]


class BpfLinkInfo(_S):
    """``struct bpf_link_info``: ``type``/``id``/``prog_id`` then one member per link type."""

    _anonymous_ = ("_u",)
    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("prog_id", u32),
        ("_u", _LinkInfoU),
    ]


# --- program-side records ---------------------------------------------------------------


class BpfFuncInfo(_S):
    """``struct bpf_func_info`` (one record of BPF_PROG_LOAD func_info)."""

    _fields_ = [("insn_off", u32), ("type_id", u32)]


class LineCol:
    """Mixin for anything with a ``line_col`` field, as packed in ``bpf_line_info``:
    ``BPF_LINE_INFO_LINE_NUM`` (line << 10) and ``BPF_LINE_INFO_LINE_COL`` (low 10 bits)."""

    __slots__ = ()
    line_col: int

    @property
    def line(self) -> int:
        return self.line_col >> 10

    @property
    def col(self) -> int:
        return self.line_col & 0x3FF


class BpfLineInfo(_S, LineCol):
    """``struct bpf_line_info`` (one record of BPF_PROG_LOAD line_info)."""

    _fields_ = [("insn_off", u32), ("file_name_off", u32), ("line_off", u32),
                ("line_col", u32)]


class BpfInsn(_S):
    """``struct bpf_insn``: 8 bytes, ``dst_reg`` in the low nibble of byte 1."""

    _fields_ = [
        ("code", u8),
        ("dst_reg", u8, 4),
        ("src_reg", u8, 4),
        ("off", s16),
        ("imm", s32),
    ]


#: Info struct per object kind, for BPF_OBJ_GET_INFO_BY_FD.
INFO_TYPES = (BpfProgInfo, BpfMapInfo, BpfBtfInfo, BpfLinkInfo)
