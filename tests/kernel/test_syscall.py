"""nfpipe.kernel.syscall against this kernel: maps, programs, BTF, info/ids, links.

Programs are assembled by hand from ``abi.BpfInsn`` so these tests depend on
nothing but the syscall layer.  Interfaces are a veth pair created per test
under a random ``nfk*`` name and always deleted.
"""
from __future__ import annotations

import errno
import gc
import os
import secrets
import struct

import pytest

from nfpipe.errors import KernelError
from nfpipe.kernel import abi, syscall as sc
from nfpipe.kernel.abi import AttachType, MapType, ProgType

pytestmark = pytest.mark.kernel

# --- a tiny assembler ------------------------------------------------------------------


def insn(code, dst=0, src=0, off=0, imm=0) -> bytes:
    return bytes(abi.BpfInsn(code=code, dst_reg=dst, src_reg=src, off=off, imm=imm))


def mov_imm(dst, imm):             # dst = imm (64-bit)
    return insn(0xB7, dst, imm=imm)


def mov_reg(dst, src):             # dst = src
    return insn(0xBF, dst, src)


def add_imm(dst, imm):             # dst += imm
    return insn(0x07, dst, imm=imm)


def ldx_w(dst, src, off):          # dst = *(u32 *)(src + off)
    return insn(0x61, dst, src, off)


def st_w(dst, off, imm):           # *(u32 *)(dst + off) = imm
    return insn(0x62, dst, off=off, imm=imm)


def st_b(dst, off, imm):           # *(u8 *)(dst + off) = imm
    return insn(0x72, dst, off=off, imm=imm)


def jgt_reg(dst, src, off):        # if dst > src goto +off
    return insn(0x2D, dst, src, off)


def jeq_imm(dst, imm, off):        # if dst == imm goto +off
    return insn(0x15, dst, off=off, imm=imm)


def atomic_add64(dst, src, off=0):  # lock *(u64 *)(dst + off) += src
    return insn(0xDB, dst, src, off, imm=0)


def ld_map_fd(dst, fd):            # dst = map (ld_imm64 with BPF_PSEUDO_MAP_FD)
    return insn(0x18, dst, abi.BPF_PSEUDO_MAP_FD, imm=int(fd)) + insn(0)


def call(helper):
    return insn(0x85, imm=helper)


EXIT = insn(0x95)
FUNC_MAP_LOOKUP_ELEM = 1
FUNC_XDP_ADJUST_TAIL = 65


def ret(value) -> bytes:
    return mov_imm(0, value) + EXIT


def load_xdp(insns: bytes, name: str = "nfk_test", **kw) -> sc.Fd:
    fd, _log = sc.prog_load(ProgType.XDP, insns, "GPL", name=name, **kw)
    return fd


def write_first_byte_prog(value: int) -> bytes:
    """XDP: if the packet has a byte, set it to *value*; return XDP_TX."""
    return (ldx_w(2, 1, 0)            # r2 = ctx->data
            + ldx_w(3, 1, 4)          # r3 = ctx->data_end
            + mov_reg(4, 2)
            + add_imm(4, 1)           # r4 = data + 1
            + mov_imm(0, abi.XDP_TX)
            + jgt_reg(4, 3, 1)        # if data + 1 > data_end: skip the store
            + st_b(2, 0, value)
            + EXIT)


def counter_prog(map_fd) -> bytes:
    """XDP: counters[0] += 1 (an array map of u64); return XDP_PASS."""
    return (st_w(10, -4, 0)           # key = 0 on the stack
            + mov_reg(2, 10)
            + add_imm(2, -4)          # r2 = &key
            + ld_map_fd(1, map_fd)
            + call(FUNC_MAP_LOOKUP_ELEM)
            + jeq_imm(0, 0, 2)        # NULL: skip the increment
            + mov_imm(1, 1)
            + atomic_add64(0, 1)
            + ret(abi.XDP_PASS))


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


PACKET = bytes(range(64))

# --- Fd ---------------------------------------------------------------------------------


def test_fd_owns_and_closes_its_descriptor():
    fd = sc.map_create(MapType.ARRAY, 4, 4, 1, name="nfk_fd")
    num = fd.fd
    assert int(fd) == fd.fileno() == num and not fd.closed and repr(fd) == f"<Fd {num}>"
    dup = fd.dup()
    assert dup.fd != num
    assert sc.map_info(dup).id == sc.map_info(num).id          # plain int accepted too
    fd.close()
    fd.close()                                                  # idempotent
    assert fd.closed and fd.fd == -1 and repr(fd) == "<Fd closed>"
    with pytest.raises(ValueError):
        int(fd)
    with pytest.raises(OSError):
        os.fstat(num)
    with dup as d:
        assert d is dup
    assert dup.closed
    # the garbage-collection safety net
    stray = sc.map_create(MapType.ARRAY, 4, 4, 1, name="nfk_stray")
    stray_num = stray.fd
    del stray
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(stray_num)
    with pytest.raises(ValueError):
        sc.Fd(-1)


# --- maps -------------------------------------------------------------------------------


def test_hash_map_update_flags_lookup_delete_and_iteration():
    with sc.map_create(MapType.HASH, 4, 8, 32, name="nfk_hash") as fd:
        sc.map_update_elem(fd, u32(1), u64(100))                       # BPF_ANY creates
        sc.map_update_elem(fd, u32(1), u64(101), abi.BPF_ANY)           # ...and replaces
        assert sc.map_lookup_elem(fd, u32(1), 8) == u64(101)
        with pytest.raises(KernelError) as exc:
            sc.map_update_elem(fd, u32(1), u64(102), abi.BPF_NOEXIST)
        assert exc.value.errno == errno.EEXIST and exc.value.op == "BPF_MAP_UPDATE_ELEM"
        with pytest.raises(KernelError) as exc:
            sc.map_update_elem(fd, u32(2), u64(200), abi.BPF_EXIST)
        assert exc.value.errno == errno.ENOENT
        assert sc.map_lookup_elem(fd, u32(2), 8) is None
        sc.map_update_elem(fd, u32(2), u64(200), abi.BPF_NOEXIST)
        sc.map_update_elem(fd, u32(2), u64(201), abi.BPF_EXIST)
        assert sc.map_lookup_elem(fd, u32(2), 8) == u64(201)
        for k in range(3, 10):
            sc.map_update_elem(fd, u32(k), u64(k * 100))

        seen, key = [], None
        while (key := sc.map_get_next_key(fd, key, 4)) is not None:
            seen.append(struct.unpack("<I", key)[0])
        assert sorted(seen) == list(range(1, 10))
        assert sc.map_get_next_key(fd, u32(12345), 4) is not None      # absent: first key

        assert sc.map_delete_elem(fd, u32(2)) is True
        assert sc.map_delete_elem(fd, u32(2)) is False
        assert sc.map_lookup_and_delete_elem(fd, u32(3), 8) == u64(300)
        assert sc.map_lookup_elem(fd, u32(3), 8) is None
        assert sc.map_lookup_and_delete_elem(fd, u32(3), 8) is None


def test_hash_map_full_and_bad_sizes():
    with sc.map_create(MapType.HASH, 4, 4, 2, name="nfk_full") as fd:
        sc.map_update_elem(fd, u32(1), u32(1))
        sc.map_update_elem(fd, u32(2), u32(2))
        with pytest.raises(KernelError) as exc:
            sc.map_update_elem(fd, u32(3), u32(3))
        assert exc.value.errno == errno.E2BIG
        assert "the map is full" in str(exc.value) and "older" not in str(exc.value)
    with pytest.raises(KernelError) as exc:
        sc.map_create(MapType.ARRAY, 4, 0, 1, name="nfk_bad")
    assert exc.value.errno == errno.EINVAL and exc.value.op == "BPF_MAP_CREATE"
    assert "nfk_bad" in str(exc.value)


def test_array_map_semantics():
    with sc.map_create(MapType.ARRAY, 4, 8, 4, name="nfk_array") as fd:
        assert sc.map_lookup_elem(fd, u32(3), 8) == bytes(8)         # arrays are preallocated
        assert sc.map_lookup_elem(fd, u32(4), 8) is None              # out of range
        sc.map_update_elem(fd, u32(3), u64(7), abi.BPF_EXIST)
        assert sc.map_lookup_elem(fd, u32(3), 8) == u64(7)
        with pytest.raises(KernelError) as exc:
            sc.map_update_elem(fd, u32(0), u64(1), abi.BPF_NOEXIST)
        assert exc.value.errno == errno.EEXIST
        with pytest.raises(KernelError) as exc:
            sc.map_update_elem(fd, u32(4), u64(1))
        assert exc.value.errno == errno.E2BIG
        assert "past the end of an array" in str(exc.value)
        with pytest.raises(KernelError) as exc:
            sc.map_delete_elem(fd, u32(0))
        assert exc.value.errno == errno.EINVAL


def test_percpu_array_holds_one_value_per_possible_cpu():
    ncpu = sc.possible_cpus()
    with sc.map_create(MapType.PERCPU_ARRAY, 4, 4, 2, name="nfk_pcpu") as fd:
        # each CPU's 4-byte value sits in an 8-byte slot
        per_cpu = b"".join(struct.pack("<II", 1000 + cpu, 0) for cpu in range(ncpu))
        sc.map_update_elem(fd, u32(1), per_cpu)
        got = sc.map_lookup_elem(fd, u32(1), 8 * ncpu)
        assert [struct.unpack_from("<I", got, 8 * c)[0] for c in range(ncpu)] == \
            [1000 + c for c in range(ncpu)]
        assert sc.map_lookup_elem(fd, u32(0), 8 * ncpu) == bytes(8 * ncpu)


def test_lru_hash_evicts_instead_of_failing():
    with sc.map_create(MapType.LRU_HASH, 4, 4, 16, name="nfk_lru") as fd:
        for k in range(200):
            sc.map_update_elem(fd, u32(k), u32(k))        # never E2BIG
        keys, key = [], None
        while (key := sc.map_get_next_key(fd, key, 4)) is not None:
            keys.append(struct.unpack("<I", key)[0])
        assert 0 < len(keys) <= 16
        assert 199 in keys and 0 not in keys
        assert sc.map_lookup_elem(fd, u32(199), 4) == u32(199)


def test_lpm_trie_longest_prefix_match():
    def key(prefix_len, ip):
        return u32(prefix_len) + bytes(int(x) for x in ip.split("."))

    with sc.map_create(MapType.LPM_TRIE, 8, 4, 16, name="nfk_lpm",
                       flags=abi.BPF_F_NO_PREALLOC) as fd:
        sc.map_update_elem(fd, key(8, "10.0.0.0"), u32(8))
        sc.map_update_elem(fd, key(16, "10.1.0.0"), u32(16))
        assert sc.map_lookup_elem(fd, key(32, "10.1.2.3"), 4) == u32(16)
        assert sc.map_lookup_elem(fd, key(32, "10.2.3.4"), 4) == u32(8)
        assert sc.map_lookup_elem(fd, key(32, "11.0.0.1"), 4) is None
        assert sc.map_delete_elem(fd, key(16, "10.1.0.0"))
        assert sc.map_lookup_elem(fd, key(32, "10.1.2.3"), 4) == u32(8)


def test_queue_map_lookup_and_delete_pops():
    with sc.map_create(MapType.QUEUE, 0, 4, 4, name="nfk_queue") as fd:
        for v in (5, 6, 7):
            sc.map_update_elem(fd, None, u32(v))
        assert [sc.map_lookup_and_delete_elem(fd, None, 4) for _ in range(4)] == \
            [u32(5), u32(6), u32(7), None]


@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.ARRAY])
def test_batch_ops_span_many_batches(map_type):
    n = 100
    with sc.map_create(map_type, 4, 8, n, name="nfk_batch") as fd:
        keys = [u32(k) for k in range(n)]
        values = [u64(k * 3 + 1) for k in range(n)]
        assert sc.map_update_batch(fd, keys, values) == n

        got, cursor, calls = {}, None, 0
        while True:
            ks, vs, cursor, done = sc.map_lookup_batch(fd, 4, 8, 16, cursor)
            calls += 1
            assert len(ks) == len(vs) <= 16
            for k, v in zip(ks, vs):
                assert k not in got
                got[k] = v
            if done:
                break
            assert cursor is not None
        assert calls >= n // 16
        assert got == dict(zip(keys, values))

        if map_type == MapType.HASH:
            assert sc.map_delete_batch(fd, keys[:50]) == 50
            assert sc.map_lookup_elem(fd, keys[10], 8) is None
            assert sc.map_lookup_elem(fd, keys[60], 8) == values[60]
            drained, cursor = {}, None
            while True:
                ks, vs, cursor, done = sc.map_lookup_and_delete_batch(fd, 4, 8, 16, cursor)
                drained.update(zip(ks, vs))
                if done:
                    break
            assert drained == dict(zip(keys[50:], values[50:]))
            assert sc.map_get_next_key(fd, None, 4) is None
        else:
            with pytest.raises(KernelError) as exc:
                sc.map_delete_batch(fd, keys[:2])      # arrays cannot delete
            assert exc.value.errno in (abi.ENOTSUPP, errno.EINVAL)
            assert "entries deleted" not in str(exc.value)


def test_a_packed_batch_writes_what_the_list_form_writes():
    n = 1000
    with sc.map_create(MapType.ARRAY, 4, 4, n, name="nfk_packed") as fd:
        keys, values = struct.pack(f"<{n}I", *range(n)), struct.pack(f"<{n}I", *range(7, n + 7))
        assert sc.map_update_batch_packed(fd, keys, values, n) == n
        assert [sc.map_lookup_elem(fd, u32(k), 4) for k in (0, 1, n - 1)] == \
            [u32(7), u32(8), u32(n + 6)]
        with pytest.raises(ValueError):
            sc.map_update_batch_packed(fd, keys[:-1], values, n)


def test_fdinfo_reports_what_the_kernel_charges_a_map():
    with sc.map_create(MapType.HASH, 16, 8, 1 << 20, name="nfk_mem") as big, \
            sc.map_create(MapType.HASH, 16, 8, 1024, name="nfk_mem2") as small:
        info = sc.fdinfo(big)
        assert int(info["max_entries"]) == 1 << 20 and int(info["key_size"]) == 16
        assert int(info["map_id"]) > 0
        mem, mem_small = int(info["memlock"]), int(sc.fdinfo(small)["memlock"])
        assert mem > (1 << 20) * (16 + 8)              # entries preallocated, with overhead
        assert mem > 500 * mem_small


def test_update_batch_reports_partial_progress():
    with sc.map_create(MapType.HASH, 4, 4, 4, name="nfk_part") as fd:
        with pytest.raises(KernelError) as exc:
            sc.map_update_batch(fd, [u32(k) for k in range(6)], [u32(k) for k in range(6)])
        assert exc.value.errno == errno.E2BIG
        assert "4 of 6 entries written" in str(exc.value)
        assert "the map is full" in str(exc.value)


def test_freeze_makes_map_read_only_from_user_space():
    with sc.map_create(MapType.ARRAY, 4, 4, 1, name="nfk_frozen") as fd:
        sc.map_update_elem(fd, u32(0), u32(42))
        sc.map_freeze(fd)
        with pytest.raises(KernelError) as exc:
            sc.map_update_elem(fd, u32(0), u32(43))
        assert exc.value.errno == errno.EPERM and "frozen" in str(exc.value)
        assert sc.map_lookup_elem(fd, u32(0), 4) == u32(42)
        with pytest.raises(KernelError) as exc:
            sc.map_freeze(fd)                  # no write access left to freeze with
        assert exc.value.errno == errno.EPERM


# --- programs and test runs -------------------------------------------------------------


def test_load_and_run_xdp_pass():
    with load_xdp(ret(abi.XDP_PASS), name="nfk_pass") as prog:
        res = sc.prog_test_run(prog, PACKET)
        assert res.retval == abi.XDP_PASS
        assert res.data == PACKET
        assert res.ctx is None
        with load_xdp(ret(abi.XDP_DROP), name="nfk_drop") as drop:
            assert sc.prog_test_run(drop, PACKET).retval == abi.XDP_DROP


def test_test_run_returns_modified_packet():
    with load_xdp(write_first_byte_prog(0xAA), name="nfk_write") as prog:
        res = sc.prog_test_run(prog, PACKET)
        assert res.retval == abi.XDP_TX
        assert res.data == b"\xaa" + PACKET[1:]


def test_test_run_repeat_runs_the_program_repeat_times():
    with sc.map_create(MapType.ARRAY, 4, 8, 1, name="nfk_counter") as counters, \
            load_xdp(counter_prog(counters), name="nfk_count") as prog:
        res = sc.prog_test_run(prog, PACKET, repeat=1000)
        assert res.retval == abi.XDP_PASS
        assert sc.map_lookup_elem(counters, u32(0), 8) == u64(1000)
        assert 0 < res.duration_ns < 10_000_000       # average of one run
        sc.prog_test_run(prog, PACKET)
        assert sc.map_lookup_elem(counters, u32(0), 8) == u64(1001)


def test_test_run_grown_packet_and_context():
    grow = mov_imm(2, 16) + call(FUNC_XDP_ADJUST_TAIL) + ret(abi.XDP_PASS)
    with load_xdp(grow, name="nfk_grow") as prog:
        res = sc.prog_test_run(prog, PACKET)
        assert res.retval == abi.XDP_PASS and len(res.data) == len(PACKET) + 16
        assert res.data[:64] == PACKET
        # struct xdp_md in and out: data, data_end, data_meta, ingress_ifindex, rx_queue, egress
        ctx_in = struct.pack("<6I", 0, len(PACKET), 0, 0, 0, 0)
        res = sc.prog_test_run(prog, PACKET, ctx=ctx_in)
        data, data_end = struct.unpack_from("<II", res.ctx)
        assert len(res.ctx) == 24 and (data, data_end) == (0, len(PACKET) + 16)
        with pytest.raises(KernelError) as exc:
            sc.prog_test_run(prog, PACKET, data_out_size=len(PACKET))
        assert exc.value.errno == errno.ENOSPC
        assert "did not fit" in str(exc.value) and "80 bytes" in str(exc.value)


def test_test_run_xdp_live_frames_takes_no_output_buffer():
    """Live frames take no output buffer; a kernel that refuses them (EPERM, some
    sandboxed kernels do, as the probe finds) gets an error that says so."""
    from nfpipe.attach.features import probe_live_frames
    with load_xdp(ret(abi.XDP_DROP), name="nfk_live") as prog:
        if probe_live_frames() is not True:
            assert probe_live_frames() == "EPERM"
            with pytest.raises(KernelError) as exc:
                sc.prog_test_run(prog, PACKET, repeat=8,
                                 flags=abi.BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=4)
            assert exc.value.errno == errno.EPERM
            assert "BPF_F_TEST_XDP_LIVE_FRAMES refused" in str(exc.value)
            assert "xdp_live_frames" in str(exc.value)
            return
        res = sc.prog_test_run(prog, PACKET, repeat=8,
                               flags=abi.BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=4)
        assert res.data == b"" and res.ctx is None


def test_a_kernel_error_crosses_a_process_whole():
    """A KernelError (and a verifier's ProgLoadError) pickled, as a namespace call's
    child hands its exception back: the same type, errno, op, message and log."""
    import pickle
    with pytest.raises(KernelError) as exc:
        sc.map_create(MapType.ARRAY, 4, 4, 0, name="nfk_bad")     # no entries: EINVAL
    again = pickle.loads(pickle.dumps(exc.value))
    assert type(again) is KernelError and again.errno == errno.EINVAL
    assert again.op == exc.value.op and str(again) == str(exc.value)
    with pytest.raises(sc.ProgLoadError) as bad:
        sc.prog_load(ProgType.XDP, mov_reg(0, 2) + EXIT, "GPL", name="nfk_bad")
    again = pickle.loads(pickle.dumps(bad.value))
    assert type(again) is sc.ProgLoadError and again.log == bad.value.log
    assert "R2 !read_ok" in again.log and str(again) == str(bad.value)


def test_verifier_rejection_carries_the_log():
    bad = mov_reg(0, 2) + EXIT                      # r2 is never initialised
    with pytest.raises(sc.ProgLoadError) as exc:
        sc.prog_load(ProgType.XDP, bad, "GPL", name="nfk_bad")
    err = exc.value
    assert isinstance(err, KernelError)
    assert err.op == "BPF_PROG_LOAD" and err.errno == errno.EACCES
    assert "R2 !read_ok" in err.log and "R2 !read_ok" in str(err)
    assert not err.log_truncated and err.name == "nfk_bad"
    # instructions after the last exit are refused, with their own message
    with sc.map_create(MapType.ARRAY, 4, 8, 1, name="nfk_c") as m:
        with pytest.raises(sc.ProgLoadError) as exc:
            sc.prog_load(ProgType.XDP, counter_prog(m) + bad, "GPL", name="nfk_bad2")
        assert "unreachable insn" in exc.value.log


def test_verifier_log_grows_until_it_fits():
    prog, log = sc.prog_load(ProgType.XDP, ret(abi.XDP_PASS), "GPL", name="nfk_log",
                             log_level=2, log_size=128)
    with prog:
        assert len(log) > 128
        assert log.startswith("func#0") and "processed 2 insns" in log
    prog, log = sc.prog_load(ProgType.XDP, ret(abi.XDP_PASS), "GPL", name="nfk_nolog")
    with prog:
        assert log == ""


def test_log_too_big_for_the_cap_keeps_the_real_error(monkeypatch):
    monkeypatch.setattr(sc, "LOG_CAP", 256)
    bad = mov_imm(3, 1) * 40 + mov_reg(0, 2) + EXIT
    with pytest.raises(sc.ProgLoadError) as exc:
        sc.prog_load(ProgType.XDP, bad, "GPL", name="nfk_capped")
    err = exc.value
    assert err.log_truncated and err.errno == errno.EACCES      # not the log's ENOSPC
    assert 0 < len(err.log) < 256
    assert "R2 !read_ok" in err.log     # the kernel keeps the end of a log that overflows


def test_program_info_ids_and_fd_by_id():
    with sc.map_create(MapType.ARRAY, 4, 8, 1, name="nfk_info_map") as m, \
            load_xdp(counter_prog(m), name="nfk_info") as prog:
        info = sc.prog_info(prog)
        assert info.name_str == "nfk_info" and info.type == ProgType.XDP and info.id > 0
        assert len(info.tag_hex) == 16 and info.gpl_compatible == 1
        minfo = sc.map_info(m)
        assert (minfo.name_str, minfo.type, minfo.key_size, minfo.value_size,
                minfo.max_entries) == ("nfk_info_map", MapType.ARRAY, 4, 8, 1)
        assert sc.prog_map_ids(prog) == [minfo.id]
        xlated = sc.prog_xlated_insns(prog)
        assert xlated and len(xlated) % 8 == 0 and len(xlated) == info.xlated_prog_len

        assert info.id in set(sc.iter_prog_ids())
        assert minfo.id in set(sc.iter_map_ids())
        assert sc.prog_get_next_id(info.id - 1) == info.id
        with sc.prog_get_fd_by_id(info.id) as again:
            assert sc.prog_info(again).tag_hex == info.tag_hex
            assert sc.prog_test_run(again, PACKET).retval == abi.XDP_PASS
        with sc.map_get_fd_by_id(minfo.id, abi.BPF_F_RDONLY) as ro:
            assert sc.map_info(ro).id == minfo.id
            with pytest.raises(KernelError) as exc:
                sc.map_update_elem(ro, u32(0), u64(1))
            assert exc.value.errno == errno.EPERM
        gone = info.id
    with pytest.raises(KernelError) as exc:
        sc.prog_get_fd_by_id(gone)      # freed once the last fd closed
    assert exc.value.errno == errno.ENOENT and exc.value.op == "BPF_PROG_GET_FD_BY_ID"
    assert sc.prog_get_next_id(2**31 - 2) is None


def test_prog_bind_map_and_stats():
    with sc.map_create(MapType.ARRAY, 4, 4, 1, name="nfk_bound") as m, \
            load_xdp(ret(abi.XDP_PASS), name="nfk_bind") as prog:
        assert sc.prog_map_ids(prog) == []
        sc.prog_bind_map(prog, m)
        assert sc.prog_map_ids(prog) == [sc.map_info(m).id]
        with sc.enable_stats(abi.StatsType.RUN_TIME):
            sc.prog_test_run(prog, PACKET, repeat=5)
            assert sc.prog_info(prog).run_cnt >= 5


# --- BTF --------------------------------------------------------------------------------


def btf_blob(int_bits: int = 32) -> bytes:
    """A BTF blob with one type: [1] INT 'int' size=4 signed."""
    types = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", (1 << 24) | int_bits)
    strings = b"\0int\0"
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_btf_load_info_and_map_with_btf():
    blob = btf_blob()
    with sc.btf_load(blob) as btf:
        info = sc.btf_info(btf)
        assert info.id > 0 and info.btf_size == len(blob) and info.kernel_btf == 0
        assert sc.btf_data(btf) == blob
        assert sc.btf_name(btf) == ""
        with sc.map_create(MapType.HASH, 4, 4, 4, name="nfk_btfmap", btf_fd=btf,
                           btf_key_type_id=1, btf_value_type_id=1) as m:
            minfo = sc.map_info(m)
            assert (minfo.btf_id, minfo.btf_key_type_id, minfo.btf_value_type_id) == \
                (info.id, 1, 1)
        with sc.btf_get_fd_by_id(info.id) as again:
            assert sc.btf_data(again) == blob
        assert info.id in set(sc.iter_btf_ids())


def test_btf_load_failure_carries_the_log():
    with pytest.raises(sc.BtfLoadError) as exc:
        sc.btf_load(btf_blob(int_bits=64))
    err = exc.value
    assert err.op == "BPF_BTF_LOAD" and err.errno == errno.EINVAL
    assert "nr_bits exceeds type_size" in err.log and "magic: 0xeb9f" in err.log


def test_vmlinux_btf_is_listed():
    first = sc.btf_get_next_id(0)
    assert first is not None
    names = {}
    for btf_id in sc.iter_btf_ids():
        with sc.btf_get_fd_by_id(btf_id) as fd:
            if sc.btf_info(fd).kernel_btf:
                names[sc.btf_name(fd)] = btf_id
    assert "vmlinux" in names


# --- links on a veth pair ---------------------------------------------------------------


@pytest.fixture
def veth():
    """A veth pair under a random nfk* name; yields (name, ifindex), always deleted."""
    from pyroute2 import IPRoute

    name = "nfk" + secrets.token_hex(4)
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=name + "p")
        try:
            yield name, ipr.link_lookup(ifname=name)[0]
        finally:
            for idx in ipr.link_lookup(ifname=name):
                ipr.link("del", index=idx)


def netlink_xdp_prog_id(ifindex: int) -> int:
    """The XDP program id netlink reports for *ifindex* (0: none): an independent view."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        xdp = ipr.get_links(ifindex)[0].get_attr("IFLA_XDP")
        if xdp is None:
            return 0
        return xdp.get_attr("IFLA_XDP_PROG_ID") or 0


def test_xdp_link_create_update_detach(veth):
    _name, ifindex = veth
    with load_xdp(ret(abi.XDP_PASS), name="nfk_x1") as p1, \
            load_xdp(ret(abi.XDP_DROP), name="nfk_x2") as p2:
        id1, id2 = sc.prog_info(p1).id, sc.prog_info(p2).id
        link = sc.link_create(p1, ifindex, AttachType.XDP, flags=abi.XDP_FLAGS_SKB_MODE)
        with link:
            info = sc.link_info(link)
            assert (info.type, info.prog_id, info.xdp.ifindex) == (abi.LinkType.XDP, id1,
                                                                    ifindex)
            assert netlink_xdp_prog_id(ifindex) == id1
            assert info.id in set(sc.iter_link_ids())
            with sc.link_get_fd_by_id(info.id) as again:
                assert sc.link_info(again).prog_id == id1

            with pytest.raises(KernelError) as exc:        # the hook is taken by the link
                sc.link_create(p2, ifindex, AttachType.XDP, flags=abi.XDP_FLAGS_SKB_MODE)
            assert exc.value.errno == errno.EBUSY

            sc.link_update(link, p2)
            assert sc.link_info(link).prog_id == id2
            assert netlink_xdp_prog_id(ifindex) == id2
            with pytest.raises(KernelError) as exc:        # p1 is no longer the one attached
                sc.link_update(link, p1, old_prog_fd=p1)
            assert exc.value.errno == errno.EPERM
            sc.link_update(link, p1, old_prog_fd=p2)
            assert netlink_xdp_prog_id(ifindex) == id1

            sc.link_detach(link)
            assert netlink_xdp_prog_id(ifindex) == 0
            assert sc.link_info(link).xdp.ifindex == 0
        # closing a live link detaches too
        with sc.link_create(p1, ifindex, AttachType.XDP, flags=abi.XDP_FLAGS_SKB_MODE):
            assert netlink_xdp_prog_id(ifindex) == id1
        assert netlink_xdp_prog_id(ifindex) == 0


def test_tcx_links_order_revision_and_detach(veth):
    _name, ifindex = veth

    def load_tc(name):
        fd, _ = sc.prog_load(ProgType.SCHED_CLS, ret(abi.TCX_NEXT), "GPL", name=name)
        return fd

    with load_tc("nfk_t1") as p1, load_tc("nfk_t2") as p2, load_tc("nfk_t3") as p3:
        ids = {n: sc.prog_info(p).id for n, p in (("p1", p1), ("p2", p2), ("p3", p3))}
        q0 = sc.prog_query(ifindex, AttachType.TCX_INGRESS)
        assert q0.prog_ids == []
        with sc.link_create(p1, ifindex, AttachType.TCX_INGRESS) as l1:
            q1 = sc.prog_query(ifindex, AttachType.TCX_INGRESS)
            l1_info = sc.link_info(l1)
            assert q1.prog_ids == [ids["p1"]] and q1.link_ids == [l1_info.id]
            assert q1.revision == q0.revision + 1
            assert (l1_info.type, l1_info.tcx.ifindex, l1_info.tcx.attach_type) == \
                (abi.LinkType.TCX, ifindex, AttachType.TCX_INGRESS)

            with pytest.raises(KernelError) as exc:
                sc.link_create(p2, ifindex, AttachType.TCX_INGRESS,
                               expected_revision=q0.revision)
            assert exc.value.errno == errno.ESTALE
            with sc.link_create(p2, ifindex, AttachType.TCX_INGRESS, flags=abi.BPF_F_BEFORE,
                                relative_fd=p1, expected_revision=q1.revision) as l2:
                q2 = sc.prog_query(ifindex, AttachType.TCX_INGRESS)
                assert q2.prog_ids == [ids["p2"], ids["p1"]]
                assert q2.link_ids == [sc.link_info(l2).id, l1_info.id]

                sc.link_update(l1, p3)
                assert sc.prog_query(ifindex, AttachType.TCX_INGRESS).prog_ids == \
                    [ids["p2"], ids["p3"]]
                with pytest.raises(KernelError) as exc:
                    sc.link_update(l1, p2, old_prog_fd=p1)
                assert exc.value.errno == errno.EPERM

                sc.link_detach(l2)
                assert sc.prog_query(ifindex, AttachType.TCX_INGRESS).prog_ids == [ids["p3"]]
                assert sc.prog_query(ifindex, AttachType.TCX_EGRESS).prog_ids == []
        assert sc.prog_query(ifindex, AttachType.TCX_INGRESS).prog_ids == []


def test_tcx_legacy_prog_attach_and_detach(veth):
    _name, ifindex = veth
    fd, _ = sc.prog_load(ProgType.SCHED_CLS, ret(abi.TCX_PASS), "GPL", name="nfk_legacy")
    with fd:
        pid = sc.prog_info(fd).id
        sc.prog_attach(fd, ifindex, AttachType.TCX_EGRESS)
        try:
            q = sc.prog_query(ifindex, AttachType.TCX_EGRESS)
            assert q.prog_ids == [pid] and q.link_ids == [0]
            with pytest.raises(KernelError) as exc:     # already attached
                sc.prog_attach(fd, ifindex, AttachType.TCX_EGRESS)
            assert exc.value.errno == errno.EEXIST
        finally:
            sc.prog_detach(fd, ifindex, AttachType.TCX_EGRESS)
        assert sc.prog_query(ifindex, AttachType.TCX_EGRESS).prog_ids == []
        with pytest.raises(KernelError) as exc:
            sc.prog_detach(fd, ifindex, AttachType.TCX_EGRESS)
        assert exc.value.errno == errno.ENOENT


# --- CPUs -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, cpus", [
    ("0", [0]), ("0-1\n", [0, 1]), ("0,2-5", [0, 2, 3, 4, 5]), ("0-3,8-9", [0, 1, 2, 3, 8, 9]),
])
def test_parse_cpu_list(text, cpus):
    assert sc.parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "3-1", "1-"])
def test_parse_cpu_list_rejects_garbage(text):
    with pytest.raises(ValueError):
        sc.parse_cpu_list(text)


def test_possible_cpus_matches_sysfs():
    with open("/sys/devices/system/cpu/possible") as f:
        expected = len(sc.parse_cpu_list(f.read()))
    assert sc.possible_cpus() == expected >= len(os.sched_getaffinity(0))


@pytest.mark.kernel
def test_test_run_retval_is_the_kernels_u32():
    """TC_ACT_UNSPEC (-1) reads 4294967295, as the kernel and bpftool report it; the
    signed view is there for code that wants the program's int."""
    fd, _ = sc.prog_load(ProgType.SCHED_CLS, ret(abi.TC_ACT_UNSPEC), "GPL", name="nfk_unspec")
    with fd:
        res = sc.prog_test_run(fd, bytes(64))
    assert res.retval == 4294967295 and res.signed_retval == -1
