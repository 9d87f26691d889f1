"""nfpipe's libbpf-compatible headers in bpf/include/bpf/.

A libbpf-style program must compile unchanged (with -Werror), the generated
bpf_helper_defs.h must match its generator, and helper ids are checked in the
compiled code: a BPF helper call is opcode 0x85 with src_reg 0 and the helper
id as immediate.
"""
from __future__ import annotations

import ctypes
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from nfpipe.errors import CompileError
from nfpipe.toolchain import compiler as toolchain

TOOLS = Path(__file__).resolve().parents[2] / "bpf" / "tools"
sys.path.insert(0, str(TOOLS))
import helpergen  # noqa: E402  (a developer tool next to the headers it writes, not in nfpipe)

HEADER = toolchain.bpf_dir() / "include" / "bpf" / "bpf_helper_defs.h"
KNOWN_IDS = {
    "bpf_map_lookup_elem": 1,
    "bpf_trace_printk": 6,
    "bpf_tail_call": 12,
    "bpf_redirect": 23,
    "bpf_xdp_adjust_head": 44,
    "bpf_fib_lookup": 69,
    "bpf_ringbuf_output": 130,
}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("NFPIPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NFPIPE_UAPI_INCLUDE", raising=False)
    monkeypatch.delenv("NFPIPE_BPF_DIR", raising=False)


def _insns(elf: ELFFile, section: str) -> list[tuple[int, int, int, int, int]]:
    data = elf.get_section_by_name(section).data()
    out = []
    for i in range(0, len(data), 8):
        op, regs, off, imm = struct.unpack("<BBhi", data[i:i + 8])
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def _helper_calls(elf: ELFFile, section: str) -> list[int]:
    return [imm for op, dst, src, off, imm in _insns(elf, section) if op == 0x85 and src == 0]


LIBBPF_PROG = r"""
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct lpm_v4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
} routes SEC(".maps");

int next_stage(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 8);
	__uint(key_size, sizeof(__u32));
	__array(values, int (struct xdp_md *));
} jump SEC(".maps") = {
	.values = { [1] = (void *)&next_stage },
};

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps");

/* usable in constant expressions, as libbpf's are */
_Static_assert(bpf_htons(0x1234) == 0x3412, "bpf_htons constant");
_Static_assert(bpf_ntohl(0x11223344) == 0x44332211, "bpf_ntohl constant");
_Static_assert(bpf_cpu_to_be64(0x0102030405060708ULL) == 0x0807060504030201ULL, "be64");
_Static_assert(__bpf_constant_htons(0x0800) == 0x0008, "constant variant");

static __always_inline int parse(void *data, void *end, __u32 *saddr)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > end)
		return -1;
	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		*saddr = bpf_ntohl(ip->saddr);
		return bpf_ntohs(ip->tot_len);
	default:
		return -1;
	}
}

SEC("xdp")
int xdp_main(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct lpm_v4_key key = { .prefixlen = 32 };
	__u32 idx = 0, saddr = 0;
	__u64 *cnt;
	int len = parse(data, end, &saddr);

	if (len < 0)
		return XDP_PASS;
	key.addr = bpf_htonl(saddr);
	if (!bpf_map_lookup_elem(&routes, &key))
		return XDP_DROP;
	cnt = bpf_map_lookup_elem(&counters, &idx);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	bpf_printk("len %d saddr %x", len, saddr);
	bpf_tail_call_static(ctx, &jump, 1);
	return XDP_PASS;
}

SEC("xdp")
int next_stage(struct xdp_md *ctx)
{
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
"""


def test_libbpf_style_program_compiles_with_werror(compile_c):
    obj = compile_c(LIBBPF_PROG, cflags=["-Werror", "-Wextra", "-Wno-unused-parameter"])
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        syms = {s.name: s for s in elf.get_section_by_name(".symtab").iter_symbols()}
        maps_idx = elf.get_section_index(".maps")
        for name in ("flows", "counters", "routes", "jump", "outer"):
            assert syms[name]["st_shndx"] == maps_idx, name
        assert elf.get_section(syms["xdp_main"]["st_shndx"]).name == "xdp"
        calls = _helper_calls(elf, "xdp")
        # lookup x2, printk, the asm tail call of bpf_tail_call_static
        assert calls.count(1) == 2 and 6 in calls and 12 in calls, calls
        insns = _insns(elf, "xdp")
        # the tail call loads r3 with the constant slot right before 'call 12'
        i = next(i for i, ins in enumerate(insns) if ins[0] == 0x85 and ins[4] == 12)
        assert insns[i - 1][0] in (0xB7, 0xB4) and insns[i - 1][1] == 3 and insns[i - 1][4] == 1
        # bpf_ntohs/bpf_ntohl on packet data: runtime byte swaps (BPF_END, to big endian)
        swaps = sorted(imm for op, dst, src, off, imm in insns if op in (0xDC, 0xD7))
        assert 16 in swaps and 32 in swaps, swaps
        # bpf_printk's format is a static const: it lives in .rodata
        assert b"len %d saddr %x\0" in elf.get_section_by_name(".rodata").data()


def test_printk_variants(compile_c):
    src = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int p0(struct xdp_md *ctx) { bpf_printk("none"); return 2; }
SEC("xdp") int p3(struct xdp_md *ctx) { bpf_printk("%d %d %d", 1, 2, 3); return 2; }
SEC("xdp") int p5(struct xdp_md *ctx) { bpf_printk("%d %d %d %d %d", 1, 2, 3, 4, 5); return 2; }
"""
    obj = compile_c(src, cflags=["-Werror"])
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        assert _helper_calls(elf, "xdp") == [6, 6, 177]     # trace_printk x2, trace_vprintk
        assert b"%d %d %d %d %d\0" in elf.get_section_by_name(".rodata").data()
    # BPF_NO_GLOBAL_DATA: the format is built on the stack, no .rodata
    obj = compile_c(src, name="nodata", defines={"BPF_NO_GLOBAL_DATA": None}, cflags=["-Werror"])
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        assert elf.get_section_by_name(".rodata") is None
        assert _helper_calls(elf, "xdp") == [6, 6, 177]


def test_misc_macros_compile(compile_c):
    src = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct pair { int a; long b; };
extern int LINUX_KERNEL_VERSION __kconfig __weak;
_Static_assert(offsetof(struct pair, b) == 8, "offsetof");
_Static_assert(KERNEL_VERSION(6, 1, 300) == ((6 << 16) + (1 << 8) + 255), "KERNEL_VERSION");
_Static_assert(LIBBPF_PIN_NONE == 0 && LIBBPF_PIN_BY_NAME == 1, "pin enum");
struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 64);
	__type(value, __u32);
	__ulong(map_extra, 3);
} bloom SEC(".maps");
static __noinline int sub(int x) { return x + 1; }
__hidden int helper_fn(int x) { return x * 2; }
SEC("xdp") int prog(struct xdp_md *ctx)
{
	struct pair p = { 1, 2 };
	long *bp = &p.b;
	struct pair *back = container_of(bp, struct pair, b);
	int v = back->a;
	barrier();
	barrier_var(v);
	if (unlikely(v > 5) || likely(v < 0))
		return XDP_DROP;
	return sub(v) + helper_fn(v) + (LINUX_KERNEL_VERSION > KERNEL_VERSION(5, 10, 0));
}
char _license[] SEC("license") = "GPL";
"""
    obj = compile_c(src, cflags=["-Werror"])
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        syms = {s.name: s for s in elf.get_section_by_name(".symtab").iter_symbols()}
        assert syms["helper_fn"]["st_other"]["visibility"] == "STV_HIDDEN"
        assert syms["LINUX_KERNEL_VERSION"]["st_info"]["bind"] == "STB_WEAK"
        assert syms["LINUX_KERNEL_VERSION"]["st_shndx"] == "SHN_UNDEF"
        assert elf.get_section(syms["sub"]["st_shndx"]).name == ".text"   # not inlined


def test_bpf_unreachable_that_survives_fails_the_build(compile_c):
    src = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} jt SEC(".maps");
SEC("xdp") int prog(struct xdp_md *ctx)
{
	bpf_tail_call_static(ctx, &jt, ctx->rx_queue_index);   /* not a constant */
	return XDP_PASS;
}
"""
    with pytest.raises(CompileError) as ei:
        compile_c(src)
    assert "__bpf_unreachable" in ei.value.diagnostics


def test_endian_macros_on_the_host():
    """The runtime (non-constant) and constant paths agree with the host's htons & co.

    bpf_endian.h is plain C, so zig cc builds it into a tiny host shared object;
    on a little-endian host this exercises the same __builtin_bswap* paths as BPF.
    """
    import tempfile
    src = r"""
#include <bpf/bpf_endian.h>
unsigned short t_htons(unsigned short x) { return bpf_htons(x); }
unsigned short t_ntohs(unsigned short x) { return bpf_ntohs(x); }
unsigned int t_htonl(unsigned int x) { return bpf_htonl(x); }
unsigned int t_ntohl(unsigned int x) { return bpf_ntohl(x); }
unsigned long long t_be64(unsigned long long x) { return bpf_cpu_to_be64(x); }
unsigned long long t_from_be64(unsigned long long x) { return bpf_be64_to_cpu(x); }
unsigned short c_htons(void) { return bpf_htons(0xABCD); }
unsigned int c_htonl(void) { return bpf_htonl(0x01020304); }
unsigned long long c_be64(void) { return bpf_cpu_to_be64(0x0102030405060708ULL); }
unsigned short k_htons(unsigned short x) { return __bpf_constant_htons(x); }
unsigned int k_htonl(unsigned int x) { return __bpf_constant_htonl(x); }
unsigned long long k_be64(unsigned long long x) { return __bpf_constant_cpu_to_be64(x); }
"""
    with tempfile.TemporaryDirectory() as tmp:
        c = Path(tmp) / "endian.c"
        c.write_text(src)
        so = Path(tmp) / "endian.so"
        subprocess.run([sys.executable, "-m", "ziglang", "cc", "-shared", "-fPIC", "-nostdlib",
                        "-O2", "-Wall", "-Werror", "-I", str(toolchain.bpf_include_dir()),
                        str(c), "-o", str(so)], check=True, capture_output=True, timeout=300)
        lib = ctypes.CDLL(str(so))
    types = {"s": ctypes.c_uint16, "l": ctypes.c_uint32, "q": ctypes.c_uint64}
    for name, t in [("t_htons", "s"), ("t_ntohs", "s"), ("k_htons", "s"), ("c_htons", "s"),
                    ("t_htonl", "l"), ("t_ntohl", "l"), ("k_htonl", "l"), ("c_htonl", "l"),
                    ("t_be64", "q"), ("t_from_be64", "q"), ("k_be64", "q"), ("c_be64", "q")]:
        fn = getattr(lib, name)
        fn.restype = types[t]
        fn.argtypes = [] if name.startswith("c_") else [types[t]]

    def be(fmt, v):
        return struct.unpack("=" + fmt, struct.pack(">" + fmt, v))[0]

    for v in (0, 1, 0x00FF, 0xFF00, 0x1234, 0xABCD, 0xFFFF):
        assert lib.t_htons(v) == socket.htons(v) == lib.k_htons(v)
        assert lib.t_ntohs(v) == socket.ntohs(v)
    for v in (0, 1, 0x01020304, 0xDEADBEEF, 0xFFFFFFFF, 0x80000000):
        assert lib.t_htonl(v) == socket.htonl(v) == lib.k_htonl(v)
        assert lib.t_ntohl(v) == socket.ntohl(v)
    for v in (0, 1, 0x0102030405060708, 0xFFFFFFFFFFFFFFFF, 0x8000000000000001):
        assert lib.t_be64(v) == be("Q", v) == lib.k_be64(v)
        assert lib.t_from_be64(lib.t_be64(v)) == v
    assert lib.c_htons() == socket.htons(0xABCD)
    assert lib.c_htonl() == socket.htonl(0x01020304)
    assert lib.c_be64() == be("Q", 0x0102030405060708)


# --------------------------------------------------------------------------- bpf_helper_defs.h


def _header_ids(text: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r"^static .*\(\* const (bpf_\w+)\)\(.*\) = \(void \*\) (\d+);$", text, re.M)}


def test_helper_defs_is_up_to_date():
    assert HEADER.is_file()
    bpf_h = helpergen.default_bpf_h()
    fresh = helpergen.generate(bpf_h)
    assert fresh == HEADER.read_text(), \
        "bpf_helper_defs.h is stale: run python bpf/tools/helpergen.py " \
        "-o bpf/include/bpf/bpf_helper_defs.h"
    assert helpergen.generate(bpf_h) == fresh                        # deterministic
    assert "GENERATED" in fresh.splitlines()[2]
    assert "any-linux-any/linux/bpf.h" in fresh


def test_helper_defs_cli_writes_identical_bytes(tmp_path):
    out = tmp_path / "defs.h"
    r = subprocess.run([sys.executable, str(TOOLS / "helpergen.py"), "--uapi",
                        str(helpergen.default_bpf_h()), "-o", str(out)],
                       capture_output=True, text=True, timeout=120,
                       cwd=Path(toolchain.__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == HEADER.read_bytes()


def test_header_ids_match_the_kernel_mapper():
    text = HEADER.read_text()
    ids = _header_ids(text)
    for name, hid in KNOWN_IDS.items():
        assert ids[name] == hid, name
    mapper = {f"bpf_{n}": int(i) for n, i in re.findall(
        r"FN\((\w+),\s*(\d+),", helpergen.default_bpf_h().read_text())}
    mapper.pop("bpf_unspec")
    assert ids == mapper
    assert "static long (* const bpf_map_update_elem)(void *map, const void *key, " \
           "const void *value, __u64 flags) = (void *) 2;" in text
    assert "static void *(* const bpf_map_lookup_elem)(void *map, const void *key) " \
           "= (void *) 1;" in text
    assert "static long (* const bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) " \
           "= (void *) 6;" in text
    # every declaration has its one-line summary comment right above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^static .*\(\* const (bpf_\w+)\)", line)
        if m:
            assert lines[i - 1].startswith(f"/* {m.group(1)} ({ids[m.group(1)]}): ")
            assert lines[i - 1].endswith(" */") and lines[i - 1].count("*/") == 1
            assert len(lines[i - 1]) > len(f"/* {m.group(1)} ({ids[m.group(1)]}):  */"), \
                f"empty summary: {lines[i - 1]}"
    # kernel-internal types never leak into the header
    decls = "\n".join(ln for ln in lines if ln.startswith("static "))
    for bad in (r"\bu64\b", r"\bu32\b", r"\bs32\b", r"struct bpf_map\b", r"struct sk_buff\b",
                r"struct xdp_buff\b", r"\bsize_t\b"):
        assert not re.search(bad, decls), bad


def test_compiled_calls_carry_the_helper_ids(compile_c):
    """Call every helper once; each section's single call instruction has the mapper's id."""
    ids = _header_ids(HEADER.read_text())
    body = ["#include <linux/bpf.h>", "#include <bpf/bpf_helpers.h>"]
    for name in ids:
        body.append(f'SEC("t/{name}") long t_{name}(void *ctx) '
                    f'{{ return (long)((long (*)(void)){name})(); }}')
    # and the known ones through their real prototypes
    body.append(r"""
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1);
	 __type(key, __u32); __type(value, __u32); } m SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __uint(max_entries, 1);
	 __type(key, __u32); __type(value, __u32); } pa SEC(".maps");
SEC("k/1") int k1(struct xdp_md *c) { __u32 k = 0; return bpf_map_lookup_elem(&m, &k) != 0; }
SEC("k/12") int k12(struct xdp_md *c) { bpf_tail_call(c, &pa, 0); return 0; }
SEC("k/23") int k23(struct xdp_md *c) { return bpf_redirect(c->ingress_ifindex, 0); }
SEC("k/44") int k44(struct xdp_md *c) { return bpf_xdp_adjust_head(c, -14); }
SEC("k/69") int k69(struct xdp_md *c) {
	struct bpf_fib_lookup p = {};
	return bpf_fib_lookup(c, &p, sizeof(p), 0);
}
SEC("k/130") int k130(struct xdp_md *c) { __u64 v = 1; return bpf_ringbuf_output(&rb, &v, sizeof(v), 0); }
""")
    obj = compile_c("\n".join(body) + "\n", cflags=["-Werror"])
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        for name, hid in ids.items():
            assert _helper_calls(elf, f"t/{name}") == [hid], name
        for hid in (1, 12, 23, 44, 69, 130):
            assert _helper_calls(elf, f"k/{hid}") == [hid]


# --------------------------------------------------------------------------- the generator


FAKE_BPF_H = """\
/* Start of BPF helper function descriptions:
 *
 * void *bpf_map_lookup_elem(struct bpf_map *map, const void *key)
 * 	Description
 * 		Perform a lookup in *map* for an entry associated to *key*.
 * 	Return
 * 		Map value associated to *key*, or **NULL** if no entry was
 * 		found.
 *
 * u64 bpf_get_socket_cookie(struct sk_buff *skb)
 * 	Description
 * 		Get the cookie of the socket of *skb*. More text here.
 * 	Return
 * 		A cookie.
 *
 * u64 bpf_get_socket_cookie(struct bpf_sock_addr *ctx)
 * 	Description
 * 		Same for a sock_addr.
 * 	Return
 * 		A cookie.
 *
 * long bpf_skb_store_bytes(struct sk_buff *skb, u32 offset, const void *from, u32 len, u64 flags)
 * 	Description
 * 		Store *len* bytes from address *from* into /sys/*/x */ bytes.
 * 	Return
 * 		0 on success.
 */
#define ___BPF_FUNC_MAPPER(FN, ctx...)			\\
	FN(unspec, 0, ##ctx)				\\
	FN(map_lookup_elem, 1, ##ctx)			\\
	FN(skb_store_bytes, 9, ##ctx)			\\
	FN(get_socket_cookie, 46, ##ctx)		\\
	/* */
"""


def test_generator_on_a_small_bpf_h(tmp_path):
    p = tmp_path / "bpf.h"
    p.write_text(FAKE_BPF_H)
    helpers, fwds = helpergen.parse_bpf_h(FAKE_BPF_H)
    assert [(h.name, h.id) for h in helpers] == [
        ("bpf_map_lookup_elem", 1), ("bpf_skb_store_bytes", 9), ("bpf_get_socket_cookie", 46)]
    assert fwds == ["struct __sk_buff", "struct bpf_sock_addr"]
    text = helpergen.generate(p)
    assert ("static __u64 (* const bpf_get_socket_cookie)(void *ctx) = (void *) 46;") in text
    assert ("static long (* const bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 offset, "
            "const void *from, __u32 len, __u64 flags) = (void *) 9;") in text
    assert "/* bpf_map_lookup_elem (1): Perform a lookup in map for an entry associated " \
           "to key. */" in text
    assert "/* bpf_get_socket_cookie (46): Get the cookie of the socket of skb. */" in text
    # a '*/' in the doc text must not end the comment early
    line = next(ln for ln in text.splitlines() if ln.startswith("/* bpf_skb_store_bytes"))
    assert line.count("*/") == 1 and line.endswith("*/")
    assert "struct __sk_buff;" in text


def test_generator_fails_loudly_on_a_helper_without_prototype():
    broken = FAKE_BPF_H.replace("\tFN(get_socket_cookie, 46, ##ctx)",
                                "\tFN(get_socket_cookie, 46, ##ctx)\t\t\\\n\tFN(mystery, 47, ##ctx)")
    with pytest.raises(helpergen.HelperGenError, match=r"bpf_mystery \(47\)"):
        helpergen.parse_bpf_h(broken)


def test_generator_fails_loudly_on_unknown_types_and_bad_input(tmp_path, capsys):
    odd = FAKE_BPF_H.replace("const void *key)", "struct weird_t key[4])")
    with pytest.raises(helpergen.HelperGenError):
        helpergen.parse_bpf_h(odd)
    odd = FAKE_BPF_H.replace("const void *key)", "weird_t *key)")
    with pytest.raises(helpergen.HelperGenError, match="unknown type 'weird_t"):
        helpergen.parse_bpf_h(odd)
    with pytest.raises(helpergen.HelperGenError, match="FUNC_MAPPER"):
        helpergen.parse_bpf_h(FAKE_BPF_H.split("#define")[0])
    p = tmp_path / "bpf.h"
    p.write_text(FAKE_BPF_H.replace("FN(map_lookup_elem, 1", "FN(map_lookup_elem, 9"))
    assert helpergen.main(["--uapi", str(p), "-o", str(tmp_path / "out.h")]) == 1
    assert "used by both" in capsys.readouterr().err
    assert not (tmp_path / "out.h").exists()


def test_generator_reads_pre_6_1_mapper_without_ids():
    old = FAKE_BPF_H.split("#define")[0] + (
        "#define __BPF_FUNC_MAPPER(FN)\t\\\n\tFN(unspec),\t\\\n\tFN(map_lookup_elem),\t\\\n"
        + "".join(f"\tFN(pad{i}),\t\\\n" for i in range(2, 9))
        + "\tFN(skb_store_bytes),\t\\\n"
        + "".join(f"\tFN(pad{i}),\t\\\n" for i in range(10, 46))
        + "\tFN(get_socket_cookie),\n")
    old = old.replace(" * u64 bpf_get_socket_cookie(struct sk_buff *skb)", "".join(
        f" * long bpf_pad{i}(void)\n * \tDescription\n * \t\tPad.\n *\n" for i in
        list(range(2, 9)) + list(range(10, 46))) + " * u64 bpf_get_socket_cookie(struct sk_buff *skb)")
    helpers, _ = helpergen.parse_bpf_h(old)
    ids = {h.name: h.id for h in helpers}
    assert ids["bpf_map_lookup_elem"] == 1 and ids["bpf_skb_store_bytes"] == 9
    assert ids["bpf_get_socket_cookie"] == 46
