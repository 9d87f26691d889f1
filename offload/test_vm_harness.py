"""The offload VM's harness without booting it (no qemu needed): the initramfs it
writes, how it finds a prepared cache, the gate that skips or fails."""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import vm  # noqa: E402


def read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, contents) of a newc cpio archive."""
    out, off = {}, 0
    while True:
        hdr = data[off:off + 110]
        assert hdr[:6] == b"070701", hdr[:6]
        f = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off += 110 + namesize
        off += -off % 4
        body = data[off:off + size]
        off += size
        off += -off % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body)


def test_initramfs_has_busybox_init_and_every_module(tmp_path):
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF fake busybox")
    mods = tmp_path / "modules"
    mods.mkdir()
    for name, _ in vm.MODULES:
        (mods / f"{name}.ko").write_bytes(f"module {name}".encode())
    out = tmp_path / "initramfs.cpio.gz"
    vm.write_initramfs(out, busybox, mods)
    files = read_newc(gzip.decompress(out.read_bytes()))
    assert files["bin/busybox"] == (0o100755, b"\x7fELF fake busybox")
    mode, init = files["init"]
    assert mode == 0o100755 and init.startswith(b"#!/bin/busybox sh\n")
    text = init.decode()
    # modules load in dependency order, before the 9p root is mounted
    assert "for m in netfs 9pnet 9pnet_virtio 9p psample sch_ingress cls_bpf netdevsim;" in text
    assert text.index("insmod") < text.index("hostroot")
    assert "chroot $R /bin/sh /run/nfpvm/job.sh" in text and text.rstrip().endswith("poweroff -f")
    for name, _ in vm.MODULES:
        assert files[f"lib/modules/{name}.ko"][1] == f"module {name}".encode()
    for d in ("dev", "proc", "sys", "newroot"):
        assert files[d][0] == 0o040755


def test_find_prepared_takes_only_a_complete_cache_of_this_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("NFPIPE_VM_CACHE", str(tmp_path))
    monkeypatch.delenv("NFPIPE_VM_KERNEL", raising=False)
    assert vm.find_prepared() is None
    for rel, layout in (("6.12.100+deb12", vm.LAYOUT), ("6.12.99+deb12", vm.LAYOUT - 1)):
        d = tmp_path / rel
        d.mkdir()
        (d / "vmlinuz").write_bytes(b"k")
        (d / "initramfs.cpio.gz").write_bytes(b"i")
        (d / vm.STAMP).write_text(json.dumps({"layout": layout, "release": rel,
                                              "kernel": "vmlinuz",
                                              "initramfs": "initramfs.cpio.gz"}))
    p = vm.find_prepared()
    assert p is not None and p.release == "6.12.100+deb12" and p.uname.endswith("-amd64")
    assert vm.find_prepared("6.12.99+deb12") is None       # an older layout: prepare again
    (tmp_path / "6.12.100+deb12" / "initramfs.cpio.gz").unlink()
    assert vm.find_prepared() is None                       # incomplete


def test_newest_release_orders_versions_numerically():
    assert max(["6.12.9+deb12", "6.12.118+deb12", "6.12.41+deb12"], key=vm._vkey) == \
        "6.12.118+deb12"
