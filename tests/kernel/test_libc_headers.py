"""nfpipe's libc subset in the kernel: memcmp, memcpy, memmove and memset of
bpf/include/libc/string.h do what libc's do, checked with BPF_PROG_TEST_RUN.

tests/unit/test_freestanding.py checks that they compile to no call; this
checks their results, with the wheel's clang and each system clang on PATH.
"""
from __future__ import annotations

import shlex
import shutil
import sys

import pytest

import nfpipe
from nfpipe.toolchain import compiler as toolchain

pytestmark = pytest.mark.kernel

COMPILERS = ["wheel"] + [n for n in toolchain.CLANG_NAMES if shutil.which(n)]

# The packet: 8 bytes a, 8 bytes b, then 16 bytes the program writes.
# retval: memcmp(a, b, 8) as 0 (<0), 1 (==0), 2 (>0); 3 when too short.
PROG = r"""
#include <linux/bpf.h>
#include <string.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int libc(struct xdp_md *ctx)
{
	unsigned char *p = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int r;

	if ((void *)(p + 32) > end)
		return 3;
	r = memcmp(p, p + 8, 8);
	memcpy(p + 16, p, 4);		/* out[0..3] = a[0..3] */
	memmove(p + 17, p + 16, 4);	/* overlapping: out[1..4] = old out[0..3] */
	memset(p + 24, 0xab, 8);	/* out[8..15] = 0xab */
	return r < 0 ? 0 : r == 0 ? 1 : 2;
}

char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(params=COMPILERS)
def prog(request, tmp_path, monkeypatch):
    cc = shlex.join([sys.executable, "-m", "ziglang", "cc"]) if request.param == "wheel" \
        else request.param
    monkeypatch.setenv("NFPIPE_CC", cc)
    monkeypatch.setenv("NFPIPE_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "libc.c"
    src.write_text(PROG)
    with nfpipe.Object.load(nfpipe.ObjectSpec.from_file(nfpipe.compile(src))) as obj:
        yield obj.programs["libc"]


@pytest.mark.parametrize("a, b, want", [
    (b"abcdefgh", b"abcdefgh", 1),
    (b"abcdefgh", b"abcdefgi", 0),          # last byte smaller
    (b"abcdefgi", b"abcdefgh", 2),
    (b"\x01bcdefgh", b"\xffbcdefgh", 0),    # unsigned compare: 0x01 < 0xff
    (b"\xffbcdefgh", b"\x01bcdefgh", 2),
])
def test_memcmp_orders_like_libc(prog, a, b, want):
    assert prog.test_run(a + b + bytes(16)).retval == want


def test_memcpy_memmove_memset_write_the_packet(prog):
    out = prog.test_run(b"wxyzabcd" + b"12345678" + bytes(16)).data[16:32]
    assert out[:5] == b"wwxyz"              # memcpy, then the overlapping memmove
    assert out[5:8] == bytes(3)
    assert out[8:] == b"\xab" * 8


def test_short_packet_is_left_alone(prog):
    assert prog.test_run(bytes(20)).retval == 3
