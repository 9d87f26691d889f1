"""The loader in the kernel: every map type, global data, subprograms, tail calls,
verifier errors and pins — each checked through BPF_PROG_TEST_RUN with scapy packets."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

import nfpipe
from nfpipe.errors import VerifierError

pytestmark = pytest.mark.kernel

BPF = Path(__file__).parent.parent / "bpf"
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3


def udp(src="10.0.0.1", dst="10.0.0.2", sport=1000, dport=2000, payload=b"x" * 10):
    return Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload


def ip_key(addr: str) -> int:
    """A __u32 holding an IPv4 address in network order, as the program stores it."""
    return int.from_bytes(socket.inet_aton(addr), "little")


@pytest.fixture(scope="module")
def maps_spec():
    return nfpipe.ObjectSpec.from_file(nfpipe.compile(BPF / "maps.c"))


@pytest.fixture
def maps_obj(maps_spec):
    with nfpipe.Object.load(maps_spec) as obj:
        yield obj


def test_hash_map_counts_per_source(maps_obj):
    prog = maps_obj.programs["xdp_maps"]
    for _ in range(3):
        assert prog.test_run(udp(src="10.0.0.1")).retval == XDP_PASS
    assert prog.test_run(udp(src="192.168.7.9")).retval == XDP_PASS
    by_source = maps_obj.maps["by_source"]
    assert by_source[ip_key("10.0.0.1")] == 3
    assert by_source[ip_key("192.168.7.9")] == 1
    assert len(by_source) == 2
    assert ip_key("10.9.9.9") not in by_source


def test_lru_hash_struct_key_and_value(maps_obj):
    prog = maps_obj.programs["xdp_maps"]
    pkt = udp(src="10.1.1.1", dst="10.2.2.2", sport=5353, dport=53, payload=b"q" * 20)
    prog.test_run(pkt)
    prog.test_run(pkt)
    key = {"saddr": ip_key("10.1.1.1"), "daddr": ip_key("10.2.2.2"), "sport": 5353,
           "dport": 53, "proto": socket.IPPROTO_UDP, "pad": bytes(3)}
    assert maps_obj.maps["flows"][key] == {"packets": 2, "bytes": 2 * len(pkt)}
    assert len(maps_obj.maps["flows"]) == 1


def test_array_map_override_changes_verdict(maps_obj):
    prog = maps_obj.programs["xdp_maps"]
    config = maps_obj.maps["config"]
    assert config[0] == 0
    assert len(list(config.keys())) == 4
    config[0] = XDP_DROP
    assert prog.test_run(udp()).retval == XDP_DROP
    config[0] = 0
    assert prog.test_run(udp()).retval == XDP_PASS


def test_percpu_array_returns_one_value_per_cpu(maps_obj):
    prog = maps_obj.programs["xdp_maps"]
    for _ in range(5):
        prog.test_run(udp())
    values = maps_obj.maps["percpu_packets"][0]
    from nfpipe.kernel.syscall import possible_cpus
    assert isinstance(values, list) and len(values) == possible_cpus()
    assert sum(values) == 5
    maps_obj.maps["percpu_packets"][0] = 0
    assert sum(maps_obj.maps["percpu_packets"][0]) == 0


def test_lpm_trie_longest_prefix_decides(maps_obj):
    prog = maps_obj.programs["xdp_maps"]
    lpm = maps_obj.maps["blocklist"]
    lpm[{"prefixlen": 8, "addr": socket.inet_aton("10.0.0.0")}] = XDP_DROP
    lpm[{"prefixlen": 24, "addr": socket.inet_aton("10.7.7.0")}] = XDP_TX
    assert prog.test_run(udp(src="10.200.1.1")).retval == XDP_DROP
    assert prog.test_run(udp(src="10.7.7.42")).retval == XDP_TX
    assert prog.test_run(udp(src="11.0.0.1")).retval == XDP_PASS
    assert sorted(k["prefixlen"] for k in lpm) == [8, 24]


def test_rodata_constant_set_from_python_changes_verdict(maps_spec):
    with nfpipe.Object.load(maps_spec) as obj:
        assert obj.programs["xdp_maps"].test_run(udp()).retval == XDP_PASS
    with nfpipe.Object.load(maps_spec, constants={"default_verdict": XDP_DROP}) as obj:
        assert obj.programs["xdp_maps"].test_run(udp()).retval == XDP_DROP
        rodata = obj.maps[".rodata"]
        assert rodata[0]["default_verdict"] == XDP_DROP
        with pytest.raises(nfpipe.KernelError):       # frozen: user space cannot change it
            rodata[0] = {"default_verdict": XDP_PASS}
    assert maps_spec.get_variable("default_verdict") == XDP_PASS   # the spec is untouched


def test_data_and_bss_are_maps_with_initial_values(maps_obj):
    assert maps_obj.maps[".data"][0]["last_len"] == 7
    assert maps_obj.maps[".bss"][0]["total_packets"] == 0
    pkt = udp(payload=b"z" * 33)
    maps_obj.programs["xdp_maps"].test_run(pkt, repeat=4)
    assert maps_obj.maps[".data"][0]["last_len"] == len(pkt)
    assert maps_obj.maps[".bss"][0]["total_packets"] == 4


def test_truncated_packet_aborts_in_subprogram(maps_obj):
    res = maps_obj.programs["xdp_maps"].test_run(bytes(udp())[:20])
    assert res.retval == XDP_ABORTED
    assert maps_obj.programs["xdp_maps"].spec.subprograms  # the parser really is a subprogram


def test_prog_array_tail_calls_leave_marks():
    spec = nfpipe.ObjectSpec.from_file(nfpipe.compile(BPF / "tailcall.c"))
    assert spec.maps["jump"].contents == [(0, "stage0"), (1, "stage1")]
    with nfpipe.Object.load(spec) as obj:
        entry = obj.programs["entry"]
        res = entry.test_run(b"...." + bytes(60))
        assert res.retval == XDP_TX
        assert res.data[:3] == b"EAB"
        assert obj.maps[".bss"][0]["fallthrough_count"] == 0
        # An empty slot: the tail call falls through and the program says so.
        del obj.maps["jump"][1]
        res = entry.test_run(b"...." + bytes(60))
        assert (res.retval, res.data[:3]) == (XDP_DROP, b"EA.")
        assert obj.maps[".bss"][0]["fallthrough_count"] == 1
        # Re-point slot 0 at stage1 directly: the path changes without reloading.
        obj.maps["jump"][0] = obj.programs["stage1"]
        res = entry.test_run(b"...." + bytes(60))
        assert (res.retval, res.data[:3]) == (XDP_TX, b"E.B")


def test_verifier_rejection_names_the_c_line():
    src = BPF / "bad_access.c"
    spec = nfpipe.ObjectSpec.from_file(nfpipe.compile(src))
    with pytest.raises(VerifierError) as info:
        nfpipe.Object.load(spec)
    err = info.value
    bad_line = next(i for i, ln in enumerate(src.read_text().splitlines(), 1) if "BAD_LINE" in ln)
    assert err.program == "unchecked"
    assert err.source_line is not None and f"bad_access.c:{bad_line}" in err.source_line
    assert "eth->h_proto" in err.source_line
    assert "invalid access to packet" in err.log
    assert f"bad_access.c:{bad_line}" in str(err)


def test_failed_load_closes_every_fd():
    """A rejected program must not leave the maps created before it behind."""
    spec = nfpipe.ObjectSpec.from_file(nfpipe.compile(BPF / "bad_access.c"))
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(VerifierError):
            nfpipe.Object.load(spec)
    assert set(os.listdir("/proc/self/fd")) <= before


def test_pinned_map_opened_from_a_second_process(maps_spec, tmp_path):
    from nfpipe.kernel import bpffs
    bpffs.ensure_mounted()
    pin_dir = f"{bpffs.DEFAULT_ROOT}/nfpipe-test-{uuid.uuid4().hex[:10]}"
    path = f"{pin_dir}/by_source"
    try:
        with nfpipe.Object.load(maps_spec) as obj:
            obj.programs["xdp_maps"].test_run(udp(src="172.16.0.5"), repeat=6)
            obj.maps["by_source"].pin(path)
        # The object is closed: only the pin keeps the map alive.
        code = (
            "import sys, socket\n"
            "from nfpipe.loader import Map\n"
            f"m = Map.from_pin({path!r})\n"
            "k = int.from_bytes(socket.inet_aton('172.16.0.5'), 'little')\n"
            "print(m[k], m.name, len(m))\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["6", "by_source", "1"]
    finally:
        if os.path.exists(path):
            os.unlink(path)
        if os.path.isdir(pin_dir):
            os.rmdir(pin_dir)
    assert not os.path.exists(pin_dir)


def test_program_accepts_scapy_packets_and_reports_duration(maps_obj):
    res = maps_obj.programs["xdp_maps"].test_run(
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=443, flags="S"), repeat=50)
    assert res.retval == XDP_PASS
    assert res.duration_ns > 0
    assert IP(res.data[14:]).dst == "10.0.0.2"


def test_map_replacement_shares_one_map_between_objects(maps_spec):
    """Two loads of one object sharing 'by_source': both programs count into it, and
    closing either object leaves the shared map (owned by the caller) open."""
    with nfpipe.Object.load(maps_spec) as first:
        shared = first.maps["by_source"]
        with nfpipe.Object.load(maps_spec, maps={"by_source": shared}) as second:
            first.programs["xdp_maps"].test_run(udp(src="10.5.5.5"))
            second.programs["xdp_maps"].test_run(udp(src="10.5.5.5"), repeat=2)
            assert second.maps["by_source"] is shared
            assert shared[ip_key("10.5.5.5")] == 3
            assert second.maps["flows"] is not first.maps["flows"]
        assert not shared.closed
        assert shared[ip_key("10.5.5.5")] == 3


def test_map_replacement_must_be_compatible(maps_spec):
    with nfpipe.Object.load(maps_spec) as first:
        with pytest.raises(nfpipe.SpecError, match="does not match map 'flows'"):
            nfpipe.Object.load(maps_spec, maps={"flows": first.maps["by_source"]})
        with pytest.raises(nfpipe.SpecError, match="no such map"):
            nfpipe.Object.load(maps_spec, maps={"nope": first.maps["by_source"]})
        assert not first.maps["by_source"].closed


GLOBALS = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u32 hits = 0;                          /* .bss: several variables, none at offset 0 only */
__u64 bytes_seen = 0;
__u16 last_len = 0;
__u32 marker = 0xfeedf00d;               /* .data */
__u64 total = 7;
volatile const __u32 limit = 1500;       /* .rodata */
volatile const __u16 port = 53;

SEC("xdp")
int g(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;

	hits++;
	bytes_seen += len;
	last_len = len;
	total += limit + port;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_global_data_maps_are_mmapable_like_libbpfs(compile_c):
    """.data, .rodata and .bss are created with BPF_F_MMAPABLE: a tool can mmap them
    and read every variable at its offset, as it can with libbpf's objects."""
    import mmap
    import struct as st

    from nfpipe.kernel import abi, syscall as sc
    path = compile_c(GLOBALS, name="globals")
    spec = nfpipe.ObjectSpec.from_file(path)
    offsets = {v.name: (v.section, v.offset) for v in spec.variables.values()}
    assert len({off for _s, off in offsets.values()}) > 1       # not all at offset 0
    with nfpipe.Object.load(spec) as obj:
        for _ in range(3):
            obj.programs["g"].test_run(bytes(100))
        views = {}
        for sec in (".bss", ".data", ".rodata"):
            m = obj.maps[sec]
            assert sc.map_info(m.fd).map_flags & abi.BPF_F_MMAPABLE, sec
            size = -(-m.value_size // mmap.PAGESIZE) * mmap.PAGESIZE
            with mmap.mmap(m.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ) as mm:
                views[sec] = bytes(mm[:m.value_size])

        def var(name: str, fmt: str):
            sec, off = offsets[name]
            return st.unpack_from(fmt, views[sec], off)[0]
        assert (var("hits", "<I"), var("bytes_seen", "<Q"), var("last_len", "<H")) == \
            (3, 300, 100)
        assert (var("marker", "<I"), var("total", "<Q")) == (0xfeedf00d, 7 + 3 * 1553)
        assert (var("limit", "<I"), var("port", "<H")) == (1500, 53)
        assert obj.maps[".bss"][0]["hits"] == 3                 # the same through the map
