"""nfpipe.kernel.bpffs: mounting, pinning across processes, unpinning, cleanup.

Every test works under its own ``/sys/fs/bpf/nfk-<random>`` directory (or a
bpffs it mounts on a temporary directory) and removes it even on failure.
"""
from __future__ import annotations

import errno
import os
import secrets
import struct
import subprocess
import sys
import textwrap

import pytest

from nfpipe.errors import KernelError
from nfpipe.kernel import abi, bpffs, syscall as sc

pytestmark = pytest.mark.kernel


def mounts_at(path: str) -> int:
    """How many mounts /proc/self/mountinfo lists at *path*."""
    with open("/proc/self/mountinfo") as f:
        return sum(1 for line in f if line.split()[4] == path)


def _force_remove_tree(path: str) -> None:
    if not os.path.lexists(path):
        return
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)


@pytest.fixture
def pin_dir():
    """A fresh directory in the default bpffs (mounted if it was not); removed afterwards."""
    bpffs.ensure_mounted(bpffs.DEFAULT_ROOT)
    path = os.path.join(bpffs.DEFAULT_ROOT, "nfk-" + secrets.token_hex(4))
    try:
        yield path
    finally:
        _force_remove_tree(path)


def test_ensure_mounted_is_a_noop_when_mounted(pin_dir):
    assert bpffs.is_bpffs(bpffs.DEFAULT_ROOT)
    before = mounts_at(bpffs.DEFAULT_ROOT)
    assert before >= 1
    assert bpffs.ensure_mounted() is False
    assert bpffs.ensure_mounted(bpffs.DEFAULT_ROOT) is False
    assert mounts_at(bpffs.DEFAULT_ROOT) == before
    assert bpffs.fs_type(bpffs.DEFAULT_ROOT) == abi.BPF_FS_MAGIC


def test_ensure_mounted_mounts_a_new_bpffs(tmp_path):
    target = str(tmp_path / "bpf" / "fs")
    assert not bpffs.is_bpffs(target) and not bpffs.is_bpffs(str(tmp_path))
    try:
        assert bpffs.ensure_mounted(target) is True
        assert bpffs.is_bpffs(target) and mounts_at(target) == 1
        assert oct(os.stat(target).st_mode & 0o777) == oct(0o700)
        with sc.map_create(abi.MapType.ARRAY, 4, 4, 1, name="nfk_mnt") as m:
            bpffs.pin(m, os.path.join(target, "m"))
            with bpffs.open_pinned(os.path.join(target, "m")) as again:
                assert sc.map_info(again).id == sc.map_info(m).id
        assert bpffs.ensure_mounted(target) is False
        assert mounts_at(target) == 1
    finally:
        while bpffs.is_bpffs(target):
            bpffs.unmount(target)
    assert not bpffs.is_bpffs(target)


def test_pinned_map_is_shared_with_another_process(pin_dir):
    path = os.path.join(pin_dir, "sub", "dir", "counters")
    fd = sc.map_create(abi.MapType.ARRAY, 4, 8, 4, name="nfk_shared")
    sc.map_update_elem(fd, struct.pack("<I", 2), struct.pack("<Q", 0xDEADBEEF42))
    bpffs.pin(fd, path)
    map_id = sc.map_info(fd).id
    fd.close()          # from here only the pin keeps the map alive

    child = textwrap.dedent(f"""
        import struct
        from nfpipe.kernel import bpffs, syscall as sc
        with bpffs.open_pinned({path!r}) as fd:
            info = sc.map_info(fd)
            value = sc.map_lookup_elem(fd, struct.pack("<I", 2), 8)
            print(info.id, info.name_str, struct.unpack("<Q", value)[0])
            sc.map_update_elem(fd, struct.pack("<I", 3), struct.pack("<Q", 777))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(map_id), "nfk_shared", str(0xDEADBEEF42)]

    with bpffs.open_pinned(path) as again:
        assert sc.map_lookup_elem(again, struct.pack("<I", 3), 8) == struct.pack("<Q", 777)
        assert bpffs.unpin(path) is True
        assert sc.map_info(again).id == map_id      # the fd still holds it
    with pytest.raises(KernelError) as exc:
        bpffs.open_pinned(path)
    assert exc.value.errno == errno.ENOENT and exc.value.op == "BPF_OBJ_GET"
    assert bpffs.unpin(path, missing_ok=True) is False
    with pytest.raises(KernelError):
        bpffs.unpin(path)

    assert bpffs.remove_empty_dirs(os.path.join(pin_dir, "sub"), stop_at=pin_dir) is True
    assert os.listdir(pin_dir) == []


def test_pinned_program_keeps_its_identity(pin_dir):
    insns = bytes(abi.BpfInsn(code=0xB7, imm=abi.XDP_PASS)) + bytes(abi.BpfInsn(code=0x95))
    prog, _ = sc.prog_load(abi.ProgType.XDP, insns, "GPL", name="nfk_pinprog")
    path = os.path.join(pin_dir, "prog")
    with prog:
        bpffs.pin(prog, path)
        prog_id = sc.prog_info(prog).id
    with bpffs.open_pinned(path) as again:
        assert sc.prog_info(again).id == prog_id
        assert sc.prog_test_run(again, bytes(64)).retval == abi.XDP_PASS
    bpffs.unpin(path)


def test_pin_outside_bpffs_is_refused_before_creating_anything(tmp_path):
    with sc.map_create(abi.MapType.ARRAY, 4, 4, 1, name="nfk_out") as m:
        with pytest.raises(KernelError) as exc:
            bpffs.pin(m, tmp_path / "a" / "b" / "m")
    assert exc.value.errno == errno.EPERM
    assert "not on a bpf filesystem" in str(exc.value)
    assert not (tmp_path / "a").exists()


def test_failed_pin_removes_the_directories_it_created(pin_dir):
    os.mkdir(pin_dir, 0o700)
    with sc.map_create(abi.MapType.ARRAY, 4, 4, 1, name="nfk_twice") as m:
        bpffs.pin(m, os.path.join(pin_dir, "m"))
        with pytest.raises(KernelError) as exc:
            bpffs.pin(m, os.path.join(pin_dir, "m"))
        assert exc.value.errno == errno.EEXIST
        with pytest.raises(KernelError) as exc:          # not a bpf object
            with open("/dev/null") as f:
                bpffs.pin(f.fileno(), os.path.join(pin_dir, "x", "y", "m"))
        assert exc.value.errno == errno.EINVAL
    assert os.listdir(pin_dir) == ["m"]
    bpffs.unpin(os.path.join(pin_dir, "m"))


def test_unpin_refuses_paths_outside_bpffs(tmp_path):
    victim = tmp_path / "file"
    victim.write_text("keep me")
    with pytest.raises(KernelError) as exc:
        bpffs.unpin(victim)
    assert "not on a bpf filesystem" in str(exc.value)
    assert victim.read_text() == "keep me"
    with pytest.raises(KernelError):
        bpffs.remove_empty_dirs(tmp_path)
    assert victim.exists()


def test_remove_empty_dirs_never_removes_pins(pin_dir):
    with sc.map_create(abi.MapType.ARRAY, 4, 4, 1, name="nfk_keep") as m:
        bpffs.pin(m, os.path.join(pin_dir, "a", "b", "m"))
    os.makedirs(os.path.join(pin_dir, "a", "c", "d"))
    assert bpffs.remove_empty_dirs(os.path.join(pin_dir, "a")) is False
    assert os.path.exists(os.path.join(pin_dir, "a", "b", "m"))
    assert not os.path.exists(os.path.join(pin_dir, "a", "c"))
    bpffs.unpin(os.path.join(pin_dir, "a", "b", "m"))
    # with the default stop (the bpffs root) the emptied parents go too
    assert bpffs.remove_empty_dirs(os.path.join(pin_dir, "a", "b")) is True
    assert not os.path.exists(pin_dir)
    assert bpffs.is_bpffs(bpffs.DEFAULT_ROOT)
