"""Freestanding builds: libbpf-style programs compile from nfpipe's headers alone.

nfpipe compiles with ``-nostdinc``: headers come from ``bpf/include`` (libbpf's
names), ``bpf/include/libc`` (the libc subset), the ziglang wheel's UAPI
headers and the compiler's own ``stddef.h`` & co., never from the host's
``/usr/include``.  Every test runs with the wheel's clang and with each system
clang on PATH: the list is what exists, so nothing is skipped under CI=true.
The objects are checked, not only compiled: constants in ``.data``, the
instructions the macros expand to, the CO-RE relocations in ``.BTF.ext``.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from nfpipe.btf import BTF, BTFExt
from nfpipe.errors import CompileError, SpecError
from nfpipe.loader import insn as I
from nfpipe.toolchain import compile as nf_compile, compiler as toolchain

WHEEL = "wheel"
SYSTEM_CLANGS = [name for name in toolchain.CLANG_NAMES if shutil.which(name)]
COMPILERS = [WHEEL] + SYSTEM_CLANGS
HOST_DIRS = ("/usr/include", "/usr/local/include")
ZIG_UAPI = Path(toolchain.ziglang_dir() or "/nonexistent") / "lib" / "libc" / "include"

OP_LDX_DW = 0x79            # BPF_LDX | BPF_MEM | BPF_DW
OP_END_BE = 0xDC            # BPF_ALU | BPF_END | BPF_TO_BE
OP_END_LE = 0xD4            # BPF_ALU | BPF_END | BPF_TO_LE
HELPER_PROBE_READ_KERNEL = 113
HELPER_FIB_LOOKUP = 69
HELPER_SKB_LOAD_BYTES = 26


@pytest.fixture(params=COMPILERS)
def cc(request, tmp_path, monkeypatch):
    """The compiler under test, chosen through NFPIPE_CC; a fresh object cache."""
    if request.param == WHEEL:
        monkeypatch.setenv("NFPIPE_CC", shlex.join([sys.executable, "-m", "ziglang", "cc"]))
    else:
        monkeypatch.setenv("NFPIPE_CC", request.param)
    monkeypatch.setenv("NFPIPE_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("NFPIPE_NO_CACHE", "NFPIPE_UAPI_INCLUDE", "NFPIPE_BPF_DIR"):
        monkeypatch.delenv(var, raising=False)
    compiler = toolchain.find_compiler()
    assert compiler.family == ("zig" if request.param == WHEEL else "clang")
    return compiler


@pytest.fixture
def build(cc, tmp_path):
    """Compile C text with -Werror; returns the object's path (in the cache)."""
    def _build(source: str, name: str = "prog", **kwargs) -> Path:
        src = tmp_path / f"{name}.c"
        src.write_text(source)
        kwargs["cflags"] = ["-Werror"] + list(kwargs.get("cflags", ()))
        return nf_compile(src, **kwargs)
    return _build


def _elf(obj: Path) -> ELFFile:
    return ELFFile(open(obj, "rb"))


def _insns(obj: Path, section: str) -> list[I.Insn]:
    data = _elf(obj).get_section_by_name(section).data()
    return [I.decode(data, i) for i in range(I.count(data))]


def _symbol_bytes(obj: Path, name: str) -> bytes:
    """The initial bytes of a global variable."""
    elf = _elf(obj)
    sym = next(s for s in elf.get_section_by_name(".symtab").iter_symbols() if s.name == name)
    data = elf.get_section(sym["st_shndx"]).data()
    return data[sym["st_value"]:sym["st_value"] + sym["st_size"]]


def _undefined_calls(obj: Path) -> set[str]:
    """Symbols that code relocations point at and nothing defines (memcpy & co.)."""
    elf = _elf(obj)
    symtab = elf.get_section_by_name(".symtab")
    out = set()
    for sec in elf.iter_sections():
        if sec.name.startswith(".rel") and not sec.name.startswith((".rel.BTF", ".rel.debug")):
            for rel in sec.iter_relocations():
                sym = symtab.get_symbol(rel["r_info_sym"])
                if sym["st_shndx"] == "SHN_UNDEF":
                    out.add(sym.name)
    return out


# --------------------------------------------------------------------------- programs

LIBC_AND_UAPI = """\
#include <linux/bpf.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <errno.h>
#include <endian.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
"""

XDP_PROG = LIBC_AND_UAPI + r"""
/* initialisers must be constant expressions: each macro is folded at compile time */
__u16 ethertypes[4] SEC(".data") = {
	bpf_htons(ETH_P_IP), htons(ETH_P_IPV6), htobe16(ETH_P_8021Q), htole16(0x1234),
};
__u32 loopback SEC(".data") = htonl(INADDR_LOOPBACK);
__u64 be64 SEC(".data") = bpf_cpu_to_be64(0x0102030405060708ULL);
__u32 byte_order SEC(".data") = __BYTE_ORDER;
int consts[4] SEC(".data") = { AF_INET, AF_INET6, SOCK_DGRAM, ENOENT };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline __u32 proto_slot(__u16 proto)
{
	switch (proto) {
	case bpf_htons(ETH_P_IP):	return 0;	/* a case label: a constant */
	case htons(ETH_P_IPV6):		return 1;
	default:			return 2;
	}
}

SEC("xdp")
int xdp_swap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 mac[ETH_ALEN];
	__u32 slot;
	__u64 *n;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	slot = proto_slot(eth->h_proto);
	n = bpf_map_lookup_elem(&counts, &slot);
	if (n)
		*n += 1;
	if (slot != 0)
		return XDP_PASS;
	memcpy(mac, eth->h_source, ETH_ALEN);
	memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	memcpy(eth->h_dest, mac, ETH_ALEN);
	return memcmp(eth->h_source, eth->h_dest, ETH_ALEN) ? XDP_TX : XDP_DROP;
}

/* a run-time conversion: one byte-swap instruction */
SEC("xdp")
int xdp_ntohs(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return 0;
	return bpf_ntohs(eth->h_proto);
}

char _license[] SEC("license") = "GPL";
"""

TC_PROG = LIBC_AND_UAPI + r"""
SEC("tc")
int tc_route(struct __sk_buff *skb)
{
	struct bpf_fib_lookup fib;
	struct iphdr ip;
	int rc;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), &ip, sizeof(ip)) < 0)
		return TC_ACT_SHOT;
	memset(&fib, 0, sizeof(fib));
	fib.family = AF_INET;
	fib.l4_protocol = ip.protocol;
	fib.tot_len = bpf_ntohs(ip.tot_len);
	fib.ipv4_src = ip.saddr;
	fib.ipv4_dst = ip.daddr;
	fib.ifindex = skb->ingress_ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == -ENOENT || rc != BPF_FIB_LKUP_RET_SUCCESS)
		return TC_ACT_OK;
	return bpf_redirect(fib.ifindex, 0);
}

char _license[] SEC("license") = "GPL";
"""


def test_libbpf_style_xdp_program_compiles_and_folds_byte_order_constants(build):
    obj = build(XDP_PROG, "xdp")
    sections = {s.name for s in _elf(obj).iter_sections()}
    assert {"xdp", ".maps", ".data", "license", ".BTF", ".BTF.ext"} <= sections
    assert _undefined_calls(obj) == set()       # memcpy/memcmp never left as calls
    calls = [ins for ins in _insns(obj, "xdp") if ins.is_call]
    assert [c.imm for c in calls if c.is_helper_call] == [1]    # bpf_map_lookup_elem
    assert all(c.is_helper_call for c in calls)                 # nor as subprograms
    # network order in memory whatever the host's order; htole16 little-endian
    assert _symbol_bytes(obj, "ethertypes") == bytes.fromhex("0800 86dd 8100 3412")
    assert _symbol_bytes(obj, "loopback") == bytes.fromhex("7f000001")
    assert _symbol_bytes(obj, "be64") == bytes.fromhex("0102030405060708")
    order = int.from_bytes(_symbol_bytes(obj, "byte_order"), sys.byteorder)
    assert order == (1234 if sys.byteorder == "little" else 4321)
    consts = _symbol_bytes(obj, "consts")
    assert [int.from_bytes(consts[i:i + 4], sys.byteorder) for i in range(0, 16, 4)] == \
        [2, 10, 2, 2]                           # AF_INET, AF_INET6, SOCK_DGRAM, ENOENT


def test_runtime_ntohs_is_one_byte_swap_instruction(build):
    obj = build(XDP_PROG, "xdp")
    elf = _elf(obj)
    syms = {s.name: s for s in elf.get_section_by_name(".symtab").iter_symbols()}
    sym = syms["xdp_ntohs"]
    code = elf.get_section(sym["st_shndx"]).data()[sym["st_value"]:sym["st_value"] + sym["st_size"]]
    swaps = [ins for ins in (I.decode(code, i) for i in range(I.count(code)))
             if ins.opcode in (OP_END_BE, OP_END_LE, 0xD7)]     # 0xd7: v4 bswap
    if sys.byteorder == "little":
        assert [(s.opcode, s.imm) for s in swaps] in ([(OP_END_BE, 16)], [(0xD7, 16)])
    else:
        assert swaps == []


def test_libbpf_style_tc_program_compiles(build):
    obj = build(TC_PROG, "tc")
    assert _undefined_calls(obj) == set()
    calls = [ins.imm for ins in _insns(obj, "tc") if ins.is_helper_call]
    assert HELPER_SKB_LOAD_BYTES in calls and HELPER_FIB_LOOKUP in calls


# --------------------------------------------------------------------------- bpf_tracing.h

# The register each macro reads, by the arch's calling convention (the ABI
# documents, not nfpipe's header), and the UAPI type the kernel exposes them as.
# The tests compare the load offset each macro emits with offsetof() of that
# member, compiled against the ziglang wheel's UAPI <asm/ptrace.h> of that arch.
_ARGS = ["PARM1", "PARM2", "PARM3", "PARM4", "PARM5", "PARM6", "PARM7", "PARM8"]
ARCH_REGS = {
    "x86": ("x86-linux-any", "struct pt_regs", dict(
        zip(_ARGS, ["rdi", "rsi", "rdx", "rcx", "r8", "r9"]),
        RC="rax", SP="rsp", IP="rip", FP="rbp", RET="rsp")),
    "arm64": ("aarch64-linux-any", "struct user_pt_regs", dict(
        zip(_ARGS, [f"regs[{i}]" for i in range(8)]),
        RC="regs[0]", SP="sp", IP="pc", FP="regs[29]", RET="regs[30]")),
    "riscv": ("riscv-linux-any", "struct user_regs_struct", dict(
        zip(_ARGS, [f"a{i}" for i in range(8)]),
        RC="a0", SP="sp", IP="pc", FP="s0", RET="ra")),
    "s390": ("s390x-linux-any", "user_pt_regs", dict(
        zip(_ARGS, [f"gprs[{i}]" for i in range(2, 7)]),
        RC="gprs[2]", SP="gprs[15]", IP="psw.addr", FP="gprs[11]", RET="gprs[14]")),
    "powerpc": ("powerpc-linux-any", "struct pt_regs", dict(
        zip(_ARGS, [f"gpr[{i}]" for i in range(3, 11)]),
        RC="gpr[3]", SP="gpr[1]", IP="nip", RET="link")),
    "loongarch": ("loongarch-linux-any", "struct user_pt_regs", dict(
        zip(_ARGS, [f"regs[{i}]" for i in range(4, 12)]),
        RC="regs[4]", SP="regs[3]", IP="csr_era", FP="regs[22]", RET="regs[1]")),
    "mips": ("mips-linux-any", "struct pt_regs", dict(
        zip(_ARGS, [f"regs[{i}]" for i in range(4, 12)]),
        RC="regs[2]", SP="regs[29]", IP="cp0_epc", FP="regs[30]", RET="regs[31]")),
}


# Few headers: the arch's UAPI dir comes first, and its <asm/byteorder.h> & co.
# are not for a BPF target (mips' wants __MIPSEB__ or __MIPSEL__).
TRACING = """\
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
"""


def _regs_program(regs_type: str, regs: dict[str, str]) -> str:
    lines = [TRACING]
    for what, member in regs.items():
        lines.append(f"const __u64 expect_{what} = __builtin_offsetof({regs_type}, {member});")
        lines.append(f'SEC("kprobe/{what}") __u64 read_{what}(struct pt_regs *ctx) '
                     f"{{ return PT_REGS_{what}(ctx); }}")
    lines.append('char _license[] SEC("license") = "GPL";')
    return "\n".join(lines) + "\n"


def _first_load(obj: Path, section: str) -> I.Insn:
    loads = [ins for ins in _insns(obj, section) if ins.opcode == OP_LDX_DW]
    assert loads, f"no 64-bit load in {section}"
    return loads[0]


def test_pt_regs_parm1_reads_rdi_on_x86_64(build):
    # struct pt_regs of the x86_64 UAPI: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8
    # rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss, 8 bytes each
    obj = build(_regs_program("struct pt_regs", ARCH_REGS["x86"][2]), "x86",
                include_dirs=[ZIG_UAPI / "x86-linux-any"], defines={"__TARGET_ARCH_x86": None})
    got = {}
    for what in ("PARM1", "PARM2", "PARM3", "PARM4", "PARM5", "PARM6", "RC", "SP", "IP", "FP"):
        ins = _first_load(obj, f"kprobe/{what}")
        assert ins.src == 1                     # from ctx (r1)
        got[what] = ins.off
    assert got == {"PARM1": 112, "PARM2": 104, "PARM3": 96, "PARM4": 88, "PARM5": 72,
                   "PARM6": 64, "RC": 80, "SP": 152, "IP": 128, "FP": 32}


@pytest.mark.parametrize("arch", sorted(ARCH_REGS))
def test_pt_regs_macros_read_the_abi_registers(build, arch):
    uapi, regs_type, regs = ARCH_REGS[arch]
    obj = build(_regs_program(regs_type, regs), arch, include_dirs=[ZIG_UAPI / uapi],
                defines={f"__TARGET_ARCH_{arch}": None})
    for what in regs:
        expect = int.from_bytes(_symbol_bytes(obj, f"expect_{what}"), sys.byteorder)
        assert _first_load(obj, f"kprobe/{what}").off == expect, f"{arch} PT_REGS_{what}"


def test_register_the_arch_lacks_is_a_compile_error(build):
    src = TRACING + 'SEC("kprobe/x") long f(struct pt_regs *ctx) { return PT_REGS_PARM7(ctx); }\n'
    with pytest.raises(CompileError) as info:
        build(src, include_dirs=[ZIG_UAPI / "x86-linux-any"], defines={"__TARGET_ARCH_x86": None})
    assert "___nf_no_such_register_on_this_arch" in info.value.diagnostics


def test_without_an_arch_a_register_read_names_the_fix(build):
    src = TRACING + 'SEC("kprobe/x") long f(struct pt_regs *ctx) { return PT_REGS_PARM1(ctx); }\n'
    # naming any __TARGET_ARCH_ in cflags stops nfpipe from defining the host's
    with pytest.raises(CompileError) as info:
        build(src, cflags=["-U__TARGET_ARCH_x86"])
    assert "define __TARGET_ARCH_<arch>" in info.value.diagnostics
    # BPF_PROG needs no arch: a program using only it builds
    build(TRACING + 'SEC("fentry/x") int BPF_PROG(f, long a) { return a; }\n'
          'char _license[] SEC("license") = "GPL";\n', "noarch", cflags=["-U__TARGET_ARCH_x86"])


def test_bpf_kprobe_and_bpf_prog_pass_typed_arguments(build):
    src = TRACING + r"""
SEC("kprobe/k") int BPF_KPROBE(kp, long a, long b) { return a - b; }
SEC("kretprobe/k") int BPF_KRETPROBE(krp, long ret) { return ret; }
SEC("fentry/f") int BPF_PROG(fe, long a, long b, long c) { return a - b + c; }
char _license[] SEC("license") = "GPL";
"""
    obj = build(src, include_dirs=[ZIG_UAPI / "x86-linux-any"], defines={"__TARGET_ARCH_x86": None})
    offs = lambda sec: sorted(i.off for i in _insns(obj, sec) if i.opcode == OP_LDX_DW)
    assert offs("kprobe/k") == [104, 112]       # rsi, rdi
    assert offs("kretprobe/k") == [80]          # rax
    assert offs("fentry/f") == [0, 8, 16]       # ctx[0..2]


def test_host_arch_is_defined_for_64_bit_kernels_only(monkeypatch, cc):
    monkeypatch.setattr(toolchain.platform, "machine", lambda: "x86_64")
    assert "-D__TARGET_ARCH_x86" in toolchain.compile_command(cc)
    assert "-D__TARGET_ARCH_x86" not in toolchain.compile_command(
        cc, defines={"__TARGET_ARCH_arm64": None})
    assert "-D__TARGET_ARCH_x86" not in toolchain.compile_command(
        cc, cflags=["-D__TARGET_ARCH_riscv"])
    monkeypatch.setattr(toolchain.platform, "machine", lambda: "aarch64")
    assert "-D__TARGET_ARCH_arm64" in toolchain.compile_command(cc)
    for machine in ("i686", "armv7l"):
        monkeypatch.setattr(toolchain.platform, "machine", lambda m=machine: m)
        assert not any(a.startswith("-D__TARGET_ARCH_") for a in toolchain.compile_command(cc))


# --------------------------------------------------------------------------- bpf_core_read.h

CORE_PROG = LIBC_AND_UAPI + r"""
/* no preserve_access_index attribute: the macros alone must record the accesses */
struct task_struct {
	int pid;
	struct task_struct *parent;
	unsigned int flags: 3, prio: 5;
};

enum task_state { TASK_RUNNING = 0, TASK_DEAD = 16 };

SEC("tc")
int core(struct __sk_buff *skb)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	int ppid = BPF_CORE_READ(t, parent, pid);
	int prio = BPF_CORE_READ_BITFIELD_PROBED(t, prio);

	if (!bpf_core_field_exists(t->parent) || !bpf_core_type_exists(struct task_struct))
		return 0;
	return ppid + prio + bpf_core_enum_value(enum task_state, TASK_DEAD);
}

char _license[] SEC("license") = "GPL";
"""


def test_bpf_core_read_emits_co_re_relocations(build):
    obj = build(CORE_PROG, "core")
    elf = _elf(obj)
    btf = BTF.parse(elf.get_section_by_name(".BTF").data())
    ext = BTFExt.parse(elf.get_section_by_name(".BTF.ext").data(), btf)
    relos = [(r.kind_name, btf[r.type_id].name, ext.access_str(r)) for r in ext.core_relos["tc"]]
    # BPF_CORE_READ(t, parent, pid): t->parent, then ->pid, each a relocated offset
    assert ("field_byte_offset", "task_struct", "0:1") in relos
    assert ("field_byte_offset", "task_struct", "0:0") in relos
    # the bitfield: where its storage is, how big, and the two shifts that extract it
    for kind in ("field_byte_offset", "field_byte_size", "field_lshift_u64",
                 "field_rshift_u64", "field_signed"):
        assert (kind, "task_struct", "0:3") in relos, kind
    assert ("field_exists", "task_struct", "0:1") in relos
    assert ("type_exists", "task_struct", "0") in relos
    assert ("enumval_value", "task_state", "1") in relos
    calls = [ins.imm for ins in _insns(obj, "tc") if ins.is_helper_call]
    assert calls.count(HELPER_PROBE_READ_KERNEL) == 3   # parent, pid, the bitfield storage


def test_nfpipe_loader_refuses_the_co_re_program_by_name(build):
    from nfpipe.loader import ObjectSpec

    with pytest.raises(SpecError, match="CO-RE") as info:
        ObjectSpec.from_file(build(CORE_PROG, "core"))
    assert info.value.program == "core"


# --------------------------------------------------------------------------- no host headers

def _allowed_roots(compiler) -> list[Path]:
    roots = [toolchain.bpf_include_dir(), *toolchain.uapi_include_dirs()]
    builtin = toolchain.builtin_include_dir(compiler)
    roots.append(builtin if builtin is not None else toolchain.ziglang_dir() / "lib" / "include")
    return [r.resolve() for r in roots]


def test_no_host_header_is_read(build, cc):
    obj = build(XDP_PROG, "xdp")
    manifest = obj.with_suffix(".json")         # the headers the depfile named, recorded
    deps = [Path(p).resolve() for p, _digest in json.loads(manifest.read_text())["deps"]]
    assert deps
    for dep in deps:
        assert not str(dep).startswith(HOST_DIRS), dep
    roots = _allowed_roots(cc)
    strays = [d for d in deps if not any(d.is_relative_to(r) for r in roots)]
    assert strays == []
    libc = (toolchain.bpf_include_dir() / "libc").resolve()
    for name in ("string.h", "endian.h", "sys/socket.h", "netinet/in.h", "arpa/inet.h",
                 "errno.h"):
        assert libc / name in deps, name        # nfpipe's, not the host's
    assert any(d.name == "stddef.h" and d.parent.name == "include" for d in deps)


def test_include_search_list_has_no_host_dir(cc, tmp_path):
    cmd = toolchain.compile_command(cc) + ["-E", "-v", "-x", "c", "/dev/null", "-o", "/dev/null"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stderr
    lines = out.splitlines()
    start = lines.index("#include <...> search starts here:")
    searched = [Path(ln.strip()).resolve() for ln in lines[start + 1:lines.index("End of search list.")]]
    inc = toolchain.bpf_include_dir().resolve()
    uapi = [d.resolve() for d in toolchain.uapi_include_dirs()]
    if cc.family == "zig":
        expect = [inc, (toolchain.ziglang_dir() / "lib" / "include").resolve(), *uapi, inc / "libc"]
    else:
        expect = [inc, *uapi, inc / "libc", toolchain.builtin_include_dir(cc).resolve()]
    assert searched == expect


def test_a_header_only_the_host_has_is_not_found(build):
    # /usr/include/stdio.h exists on a host with libc headers; a BPF program has no stdio
    with pytest.raises(CompileError) as info:
        build('#include <stdio.h>\nint x;\n', "stdio")
    assert "'stdio.h' file not found" in info.value.diagnostics


def test_builtin_include_dir_is_the_compilers_own(cc):
    builtin = toolchain.builtin_include_dir(cc)
    if cc.family == "zig":
        assert builtin is None                  # zig cc adds lib/include itself
    else:
        assert (builtin / "stddef.h").is_file() and (builtin / "stdint.h").is_file()
        assert not str(builtin.resolve()).startswith(HOST_DIRS)


def test_compiler_that_cannot_name_its_builtin_dir_is_a_clear_error(tmp_path, monkeypatch):
    fake = tmp_path / "clang-fake"
    fake.write_text("#!/bin/sh\n"
                    'case "$1" in -print-file-name=*) echo include ;; *) echo "clang version 99";; '
                    "esac\n")
    fake.chmod(0o755)
    compiler = toolchain.Compiler("env", [str(fake)], "clang version 99", "test", "clang")
    with pytest.raises(CompileError, match="-print-file-name=include"):
        toolchain.builtin_include_dir(compiler)
