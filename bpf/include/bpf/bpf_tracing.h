/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nfpipe's bpf_tracing.h: the macros of libbpf's <bpf/bpf_tracing.h>, under
 * the same names and with the same meaning, so that libbpf-style programs that
 * include it (for BPF_PROG on fentry/tp_btf programs that watch XDP, for a
 * kprobe next to a TC program) compile unchanged.
 *
 *   PT_REGS_PARM1..8(ctx) PT_REGS_RC PT_REGS_RET PT_REGS_FP PT_REGS_SP PT_REGS_IP
 *   PT_REGS_*_CORE(ctx)       the same read through BPF_CORE_READ (include
 *                             <bpf/bpf_core_read.h>, as with libbpf)
 *   BPF_PROG(name, args...)   fentry/fexit/tp_btf/lsm: typed arguments from u64 ctx[]
 *   BPF_KPROBE(name, args...) BPF_KRETPROBE(name[, ret]) BPF_UPROBE BPF_URETPROBE
 *   BPF_KPROBE_READ_RET_IP(ip, ctx) BPF_KRETPROBE_READ_RET_IP(ip, ctx)
 *
 * Left out: the syscall forms (PT_REGS_PARMn_SYSCALL, PT_REGS_SYSCALL_REGS,
 * BPF_KSYSCALL): per-arch syscall conventions no network function uses, and
 * BPF_KSYSCALL needs the LINUX_HAS_SYSCALL_WRAPPER __kconfig extern that
 * nfpipe's loader refuses; BPF_PROG2 (struct arguments passed by value).
 *
 * Which registers hold what depends on the kernel's architecture, which a BPF
 * target does not imply: it comes from -D__TARGET_ARCH_<arch>, as with libbpf
 * (nfpipe's compiler command defines the host's unless you pass one), else
 * from the compiler's own arch macros when the header is built for a host.
 * Supported: x86 (x86_64), arm64, riscv (64-bit), s390, powerpc (64-bit),
 * loongarch, mips (64-bit, N64 ABI).  Not the 32-bit kernels (arm, i386):
 * their registers are 4 bytes, and the UAPI struct pt_regs declares them
 * 'long', which is 8 bytes in a BPF program, so every offset would be wrong.
 * Nor sparc and arc, which nfpipe does not run on.  Register names are those
 * of the UAPI struct pt_regs / user_pt_regs (from <asm/ptrace.h>, or
 * <linux/ptrace.h>), or, on x86 with vmlinux.h or __KERNEL__, of the kernel's
 * struct pt_regs.
 */
#ifndef __BPF_TRACING__
#define __BPF_TRACING__

#include "bpf_helpers.h"

#if defined(__TARGET_ARCH_x86) || (!defined(__bpf__) && defined(__x86_64__))
#define bpf_target_x86
#define bpf_target_defined
#elif defined(__TARGET_ARCH_arm64) || (!defined(__bpf__) && defined(__aarch64__))
#define bpf_target_arm64
#define bpf_target_defined
#elif defined(__TARGET_ARCH_riscv) || (!defined(__bpf__) && defined(__riscv) && __riscv_xlen == 64)
#define bpf_target_riscv
#define bpf_target_defined
#elif defined(__TARGET_ARCH_s390) || (!defined(__bpf__) && defined(__s390x__))
#define bpf_target_s390
#define bpf_target_defined
#elif defined(__TARGET_ARCH_powerpc) || (!defined(__bpf__) && defined(__powerpc64__))
#define bpf_target_powerpc
#define bpf_target_defined
#elif defined(__TARGET_ARCH_loongarch) || (!defined(__bpf__) && defined(__loongarch64))
#define bpf_target_loongarch
#define bpf_target_defined
#elif defined(__TARGET_ARCH_mips) || (!defined(__bpf__) && defined(__mips64))
#define bpf_target_mips
#define bpf_target_defined
#endif

/* Used where an arch has no such register: the compiler then says
 * "no member named '___nf_no_such_register_on_this_arch'". */
#define ___nf_noreg ___nf_no_such_register_on_this_arch

/* ---- per-arch register names -------------------------------------------------
 * ___NF_PARMn: the n-th integer argument at function entry; ___NF_RET: where
 * the return address is (x86: the stack, so the top-of-stack pointer; others:
 * the link register); ___NF_FP frame pointer, ___NF_RC return value,
 * ___NF_SP stack pointer, ___NF_IP instruction pointer.  ___NF_REGS(x) is the
 * type the registers are read through, where UAPI calls it other than
 * struct pt_regs.
 */
#if defined(bpf_target_x86)
/* System V AMD64 ABI: rdi, rsi, rdx, rcx, r8, r9 */
#if defined(__KERNEL__) || defined(__VMLINUX_H__)
#define ___NF_PARM1 di
#define ___NF_PARM2 si
#define ___NF_PARM3 dx
#define ___NF_PARM4 cx
#define ___NF_PARM5 r8
#define ___NF_PARM6 r9
#define ___NF_RET sp
#define ___NF_FP bp
#define ___NF_RC ax
#define ___NF_SP sp
#define ___NF_IP ip
#else
#define ___NF_PARM1 rdi
#define ___NF_PARM2 rsi
#define ___NF_PARM3 rdx
#define ___NF_PARM4 rcx
#define ___NF_PARM5 r8
#define ___NF_PARM6 r9
#define ___NF_RET rsp
#define ___NF_FP rbp
#define ___NF_RC rax
#define ___NF_SP rsp
#define ___NF_IP rip
#endif

#elif defined(bpf_target_arm64)
/* AAPCS64: x0..x7 arguments, x0 result, x29 frame pointer, x30 link register.
 * Userspace sees the registers as struct user_pt_regs, the start of the
 * kernel's struct pt_regs. */
#define ___NF_REGS(x) ((const struct user_pt_regs *)(x))
#define ___NF_PARM1 regs[0]
#define ___NF_PARM2 regs[1]
#define ___NF_PARM3 regs[2]
#define ___NF_PARM4 regs[3]
#define ___NF_PARM5 regs[4]
#define ___NF_PARM6 regs[5]
#define ___NF_PARM7 regs[6]
#define ___NF_PARM8 regs[7]
#define ___NF_RET regs[30]
#define ___NF_FP regs[29] /* with CONFIG_FRAME_POINTER */
#define ___NF_RC regs[0]
#define ___NF_SP sp
#define ___NF_IP pc

#elif defined(bpf_target_riscv)
/* RISC-V psABI: a0..a7 arguments, a0 result, s0 frame pointer, ra link register */
#define ___NF_REGS(x) ((const struct user_regs_struct *)(x))
#define ___NF_PARM1 a0
#define ___NF_PARM2 a1
#define ___NF_PARM3 a2
#define ___NF_PARM4 a3
#define ___NF_PARM5 a4
#define ___NF_PARM6 a5
#define ___NF_PARM7 a6
#define ___NF_PARM8 a7
#define ___NF_RET ra
#define ___NF_FP s0
#define ___NF_RC a0
#define ___NF_SP sp
#define ___NF_IP pc

#elif defined(bpf_target_s390)
/* s390x ELF ABI: r2..r6 arguments, r2 result, r11 frame pointer, r14 return
 * address, r15 stack pointer */
#define ___NF_REGS(x) ((const user_pt_regs *)(x))
#define ___NF_PARM1 gprs[2]
#define ___NF_PARM2 gprs[3]
#define ___NF_PARM3 gprs[4]
#define ___NF_PARM4 gprs[5]
#define ___NF_PARM5 gprs[6]
#define ___NF_RET gprs[14]
#define ___NF_FP gprs[11] /* with CONFIG_FRAME_POINTER */
#define ___NF_RC gprs[2]
#define ___NF_SP gprs[15]
#define ___NF_IP psw.addr

#elif defined(bpf_target_powerpc)
/* 64-bit PowerPC ELF ABI: r3..r10 arguments, r3 result, r1 stack pointer, the
 * link register holds the return address; there is no fixed frame pointer. */
#define ___NF_PARM1 gpr[3]
#define ___NF_PARM2 gpr[4]
#define ___NF_PARM3 gpr[5]
#define ___NF_PARM4 gpr[6]
#define ___NF_PARM5 gpr[7]
#define ___NF_PARM6 gpr[8]
#define ___NF_PARM7 gpr[9]
#define ___NF_PARM8 gpr[10]
#define ___NF_RET link
#define ___NF_RC gpr[3]
#define ___NF_SP gpr[1]
#define ___NF_IP nip

#elif defined(bpf_target_loongarch)
/* LoongArch ELF ABI: a0..a7 = r4..r11, ra = r1, sp = r3, fp = r22 */
#define ___NF_REGS(x) ((const struct user_pt_regs *)(x))
#define ___NF_PARM1 regs[4]
#define ___NF_PARM2 regs[5]
#define ___NF_PARM3 regs[6]
#define ___NF_PARM4 regs[7]
#define ___NF_PARM5 regs[8]
#define ___NF_PARM6 regs[9]
#define ___NF_PARM7 regs[10]
#define ___NF_PARM8 regs[11]
#define ___NF_RET regs[1]
#define ___NF_FP regs[22]
#define ___NF_RC regs[4]
#define ___NF_SP regs[3]
#define ___NF_IP csr_era

#elif defined(bpf_target_mips)
/* MIPS N64 ABI: a0..a7 = $4..$11, v0 = $2 result, sp = $29, fp = $30,
 * ra = $31; the UAPI struct pt_regs holds them as __u64 regs[32]. */
#define ___NF_PARM1 regs[4]
#define ___NF_PARM2 regs[5]
#define ___NF_PARM3 regs[6]
#define ___NF_PARM4 regs[7]
#define ___NF_PARM5 regs[8]
#define ___NF_PARM6 regs[9]
#define ___NF_PARM7 regs[10]
#define ___NF_PARM8 regs[11]
#define ___NF_RET regs[31]
#define ___NF_FP regs[30] /* with CONFIG_FRAME_POINTER */
#define ___NF_RC regs[2]
#define ___NF_SP regs[29]
#define ___NF_IP cp0_epc
#endif

struct pt_regs;

#if defined(bpf_target_defined)

#ifndef ___NF_REGS
#define ___NF_REGS(x) (x)
#endif
#ifndef ___NF_PARM6
#define ___NF_PARM6 ___nf_noreg
#endif
#ifndef ___NF_PARM7
#define ___NF_PARM7 ___nf_noreg
#endif
#ifndef ___NF_PARM8
#define ___NF_PARM8 ___nf_noreg
#endif
#ifndef ___NF_FP
#define ___NF_FP ___nf_noreg
#endif

#define PT_REGS_PARM1(x) (___NF_REGS(x)->___NF_PARM1)
#define PT_REGS_PARM2(x) (___NF_REGS(x)->___NF_PARM2)
#define PT_REGS_PARM3(x) (___NF_REGS(x)->___NF_PARM3)
#define PT_REGS_PARM4(x) (___NF_REGS(x)->___NF_PARM4)
#define PT_REGS_PARM5(x) (___NF_REGS(x)->___NF_PARM5)
#define PT_REGS_PARM6(x) (___NF_REGS(x)->___NF_PARM6)
#define PT_REGS_PARM7(x) (___NF_REGS(x)->___NF_PARM7)
#define PT_REGS_PARM8(x) (___NF_REGS(x)->___NF_PARM8)
#define PT_REGS_RET(x) (___NF_REGS(x)->___NF_RET)
#define PT_REGS_FP(x) (___NF_REGS(x)->___NF_FP)
#define PT_REGS_RC(x) (___NF_REGS(x)->___NF_RC)
#define PT_REGS_SP(x) (___NF_REGS(x)->___NF_SP)
#define PT_REGS_IP(x) (___NF_REGS(x)->___NF_IP)

/* For programs that may not dereference ctx (raw tracepoints, BPF iterators
 * handed a pt_regs pointer): a relocatable probe read. */
#define PT_REGS_PARM1_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_PARM1)
#define PT_REGS_PARM2_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_PARM2)
#define PT_REGS_PARM3_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_PARM3)
#define PT_REGS_PARM4_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_PARM4)
#define PT_REGS_PARM5_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_PARM5)
#define PT_REGS_PARM6_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_PARM6)
#define PT_REGS_PARM7_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_PARM7)
#define PT_REGS_PARM8_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_PARM8)
#define PT_REGS_RET_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_RET)
#define PT_REGS_FP_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_FP)
#define PT_REGS_RC_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_RC)
#define PT_REGS_SP_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_SP)
#define PT_REGS_IP_CORE(x) BPF_CORE_READ(___NF_REGS(x), ___NF_IP)

/* The caller's address, at function entry (kprobe) or return (kretprobe).
 * x86 pushes it: it is at the stack pointer on entry and just above the saved
 * frame pointer on return.  The other arches keep it in the link register,
 * which is read as it is.  (libbpf does that for arm64 and powerpc only; on
 * riscv, s390, loongarch and mips it reads the memory the link register
 * points at, i.e. code, as if the address were on the stack as on x86.) */
#if defined(bpf_target_x86)
#define BPF_KPROBE_READ_RET_IP(ip, ctx) \
	({ bpf_probe_read_kernel(&(ip), sizeof(ip), (void *)PT_REGS_RET(ctx)); })
#define BPF_KRETPROBE_READ_RET_IP(ip, ctx) \
	({ bpf_probe_read_kernel(&(ip), sizeof(ip), (void *)(PT_REGS_FP(ctx) + sizeof(ip))); })
#else
#define BPF_KPROBE_READ_RET_IP(ip, ctx) ({ (ip) = PT_REGS_RET(ctx); })
#define BPF_KRETPROBE_READ_RET_IP(ip, ctx) ({ (ip) = PT_REGS_RET(ctx); })
#endif

#else /* !bpf_target_defined */

/* Only an error where a register is used, so a program that includes the
 * header for BPF_PROG alone builds without an arch.  _Pragma takes exactly one
 * string literal (no concatenation), hence the long line. */
#define ___NF_NO_ARCH(x)                                                                                                                                                                                                               \
	({                                                                                                                                                                                                                             \
		_Pragma("GCC error \"bpf_tracing.h: no register layout for the kernel's architecture; define __TARGET_ARCH_<arch>, one of x86, arm64, riscv, s390, powerpc, loongarch, mips (32-bit kernels are not supported)\"") 0l; \
	})
#define PT_REGS_PARM1(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM2(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM3(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM4(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM5(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM6(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM7(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM8(x) ___NF_NO_ARCH(x)
#define PT_REGS_RET(x) ___NF_NO_ARCH(x)
#define PT_REGS_FP(x) ___NF_NO_ARCH(x)
#define PT_REGS_RC(x) ___NF_NO_ARCH(x)
#define PT_REGS_SP(x) ___NF_NO_ARCH(x)
#define PT_REGS_IP(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM1_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM2_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM3_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM4_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM5_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM6_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM7_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_PARM8_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_RET_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_FP_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_RC_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_SP_CORE(x) ___NF_NO_ARCH(x)
#define PT_REGS_IP_CORE(x) ___NF_NO_ARCH(x)
#define BPF_KPROBE_READ_RET_IP(ip, ctx) ___NF_NO_ARCH(ctx)
#define BPF_KRETPROBE_READ_RET_IP(ip, ctx) ___NF_NO_ARCH(ctx)

#endif /* bpf_target_defined */

/* ---- typed program arguments -------------------------------------------------
 * int BPF_PROG(name, struct sk_buff *skb, int len) { ... } defines the program
 * name(ctx) and an always-inline ____name(ctx, skb, len) holding the body; the
 * program passes each argument from where the hook keeps it (the u64 array of
 * fentry/tp_btf, the registers of a kprobe).  The leading return type binds to
 * the first declaration, the others repeat it with typeof(name(0)).  Integer
 * to pointer conversions of the arguments are intended, so -Wint-conversion
 * (an error in recent clang) is off for that one call.
 */
#define ___nf_prog_args0() ctx
#define ___nf_prog_args1(a) ctx, ctx[0]
#define ___nf_prog_args2(a, b) ctx, ctx[0], ctx[1]
#define ___nf_prog_args3(a, b, c) ctx, ctx[0], ctx[1], ctx[2]
#define ___nf_prog_args4(a, b, c, d) ctx, ctx[0], ctx[1], ctx[2], ctx[3]
#define ___nf_prog_args5(a, b, c, d, e) ___nf_prog_args4(a, b, c, d), ctx[4]
#define ___nf_prog_args6(a, b, c, d, e, f) ___nf_prog_args5(a, b, c, d, e), ctx[5]
#define ___nf_prog_args7(a, b, c, d, e, f, g) ___nf_prog_args6(a, b, c, d, e, f), ctx[6]
#define ___nf_prog_args8(a, b, c, d, e, f, g, h) ___nf_prog_args7(a, b, c, d, e, f, g), ctx[7]
#define ___nf_prog_args9(a, b, c, d, e, f, g, h, i) ___nf_prog_args8(a, b, c, d, e, f, g, h), ctx[8]
#define ___nf_prog_args10(a, b, c, d, e, f, g, h, i, j) \
	___nf_prog_args9(a, b, c, d, e, f, g, h, i), ctx[9]
#define ___nf_prog_args11(a, b, c, d, e, f, g, h, i, j, k) \
	___nf_prog_args10(a, b, c, d, e, f, g, h, i, j), ctx[10]
#define ___nf_prog_args12(a, b, c, d, e, f, g, h, i, j, k, l) \
	___nf_prog_args11(a, b, c, d, e, f, g, h, i, j, k), ctx[11]
#define ___nf_prog_args(args...) ___nf_cat(___nf_prog_args, ___nf_narg(args))(args)

#define ___NF_TYPED_PROG(name, ctx_decl, call_args, args...)                                      \
	name(ctx_decl);                                                                           \
	static __always_inline typeof(name(0)) ____##name(ctx_decl, ##args);                      \
	typeof(name(0)) name(ctx_decl)                                                            \
	{                                                                                         \
		_Pragma("GCC diagnostic push")                                                    \
		        _Pragma("GCC diagnostic ignored \"-Wint-conversion\"") return ____##name( \
		                call_args);                                                       \
		_Pragma("GCC diagnostic pop")                                                     \
	}                                                                                         \
	static __always_inline typeof(name(0)) ____##name(ctx_decl, ##args)

/* fentry/fexit/tp_btf/lsm/struct_ops: up to 12 arguments, each one u64 slot */
#define BPF_PROG(name, args...) \
	___NF_TYPED_PROG(name, unsigned long long *ctx, ___nf_prog_args(args), ##args)

#define ___nf_kprobe_args0() ctx
#define ___nf_kprobe_args1(a) ctx, (unsigned long long)PT_REGS_PARM1(ctx)
#define ___nf_kprobe_args2(a, b) ___nf_kprobe_args1(a), (unsigned long long)PT_REGS_PARM2(ctx)
#define ___nf_kprobe_args3(a, b, c) ___nf_kprobe_args2(a, b), (unsigned long long)PT_REGS_PARM3(ctx)
#define ___nf_kprobe_args4(a, b, c, d) \
	___nf_kprobe_args3(a, b, c), (unsigned long long)PT_REGS_PARM4(ctx)
#define ___nf_kprobe_args5(a, b, c, d, e) \
	___nf_kprobe_args4(a, b, c, d), (unsigned long long)PT_REGS_PARM5(ctx)
#define ___nf_kprobe_args6(a, b, c, d, e, f) \
	___nf_kprobe_args5(a, b, c, d, e), (unsigned long long)PT_REGS_PARM6(ctx)
#define ___nf_kprobe_args7(a, b, c, d, e, f, g) \
	___nf_kprobe_args6(a, b, c, d, e, f), (unsigned long long)PT_REGS_PARM7(ctx)
#define ___nf_kprobe_args8(a, b, c, d, e, f, g, h) \
	___nf_kprobe_args7(a, b, c, d, e, f, g), (unsigned long long)PT_REGS_PARM8(ctx)
#define ___nf_kprobe_args(args...) ___nf_cat(___nf_kprobe_args, ___nf_narg(args))(args)

/* kprobe/uprobe: the arguments from their registers (as many as the arch
 * passes in registers: 5 on s390, 6 on x86, 8 on the others) */
#define BPF_KPROBE(name, args...) \
	___NF_TYPED_PROG(name, struct pt_regs *ctx, ___nf_kprobe_args(args), ##args)

/* kretprobe/uretprobe: at most one argument, the return value (the argument
 * registers are overwritten by then) */
#define ___nf_kretprobe_args0() ctx
#define ___nf_kretprobe_args1(ret) ctx, (unsigned long long)PT_REGS_RC(ctx)
#define ___nf_kretprobe_args(args...) ___nf_cat(___nf_kretprobe_args, ___nf_narg(args))(args)
#define BPF_KRETPROBE(name, args...) \
	___NF_TYPED_PROG(name, struct pt_regs *ctx, ___nf_kretprobe_args(args), ##args)

#define BPF_UPROBE(name, args...) BPF_KPROBE(name, ##args)
#define BPF_URETPROBE(name, args...) BPF_KRETPROBE(name, ##args)

#endif /* __BPF_TRACING__ */
