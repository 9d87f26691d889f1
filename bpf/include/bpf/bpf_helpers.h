/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nfpipe's bpf_helpers.h: the macros a BPF C program expects from libbpf's
 * <bpf/bpf_helpers.h>, under the same names, so libbpf-style programs build
 * unchanged against nfpipe's headers.
 *
 *   SEC(name)                 put a program, map or variable in ELF section 'name'
 *   __uint/__type/__array/__ulong   BTF map definitions in SEC(".maps")
 *   __always_inline __noinline __weak __hidden
 *   __kconfig __ksym          extern declarations (nfpipe's loader refuses externs)
 *   LIBBPF_PIN_NONE LIBBPF_PIN_BY_NAME
 *   offsetof container_of barrier() barrier_var() likely() unlikely()
 *   __bpf_unreachable() bpf_tail_call_static() bpf_printk()
 *   every helper, as a constant pointer, from the generated bpf_helper_defs.h
 *
 * Include <linux/bpf.h> or vmlinux.h first, as with libbpf; without vmlinux.h
 * this header pulls in <linux/types.h> itself for the __u32-style types.
 */
#ifndef __BPF_HELPERS__
#define __BPF_HELPERS__

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#include "bpf_helper_defs.h"

/* ---- BTF-defined maps ------------------------------------------------------
 * struct {
 *	__uint(type, BPF_MAP_TYPE_HASH);
 *	__uint(max_entries, 1024);
 *	__type(key, __u32);
 *	__type(value, __u64);
 * } counters SEC(".maps");
 *
 * The values live only in the BTF of the member types: an integer N is the
 * element count of an array the member points to, a type is the pointee.
 */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
#define ___nf_cat_(a, b) a##b
#define ___nf_cat(a, b) ___nf_cat_(a, b)
/* A 64-bit value (map_extra): the value of an anonymous enum member. */
#define __ulong(name, val) enum { ___nf_cat(__nf_ulong_, __COUNTER__) = (val) } name

/* pinning = LIBBPF_PIN_BY_NAME pins a map under /sys/fs/bpf/<map name> */
enum libbpf_pin_type {
	LIBBPF_PIN_NONE,
	LIBBPF_PIN_BY_NAME,
};

enum libbpf_tristate {
	TRI_NO = 0,
	TRI_YES = 1,
	TRI_MODULE = 2,
};

/* ---- sections --------------------------------------------------------------
 * clang may warn that 'section' is ignored when SEC() lands on a declaration
 * it does not apply to (e.g. a forward declaration); libbpf silences that
 * -Wignored-attributes warning the same way.
 */
#if defined(__clang__)
#define SEC(name)                                                                                 \
	_Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wignored-attributes\"") \
	        __attribute__((section(name), used)) _Pragma("GCC diagnostic pop")
#else
#define SEC(name) __attribute__((section(name), used))
#endif

/* ---- function and symbol attributes ------------------------------------- */
/* linux/stddef.h defines __always_inline without the attribute: replace it */
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))

#ifndef __noinline
#define __noinline __attribute__((noinline))
#endif
#ifndef __weak
#define __weak __attribute__((weak))
#endif
#ifndef __hidden
#define __hidden __attribute__((visibility("hidden")))
#endif

/* Externs resolved by a libbpf-style loader from kconfig / kernel BTF.
 * nfpipe's loader rejects objects that use them with a clear error. */
#define __kconfig __attribute__((section(".kconfig")))
#define __ksym __attribute__((section(".ksyms")))
#define __weak_ksym __weak __ksym

#ifndef NULL
#define NULL ((void *)0)
#endif

#ifndef KERNEL_VERSION
#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))
#endif

/* ---- data structure helpers --------------------------------------------- */
#ifndef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif

#ifndef container_of
#define container_of(ptr, type, member)                                  \
	({                                                               \
		void *___nf_mptr = (void *)(ptr);                        \
		((type *)((char *)___nf_mptr - offsetof(type, member))); \
	})
#endif

/* ---- compiler barriers ---------------------------------------------------- */
#ifndef barrier
/* the compiler may not move memory accesses across it */
#define barrier() asm volatile("" ::: "memory")
#endif

#ifndef barrier_var
/* the compiler forgets what it knows about var's value (defeats range folding) */
#define barrier_var(var) asm volatile("" : "+r"(var))
#endif

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#endif
#ifndef unlikely
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/*
 * Marks a path the optimiser must remove: if a call survives optimisation the
 * build fails.  libbpf relies on __builtin_trap() not being lowered by the BPF
 * backend, but LLVM 21+ lowers it to a call of the __bpf_trap kfunc, so
 * compilers that know the 'error' attribute get a call the backend refuses.
 */
#ifndef __bpf_unreachable
#if defined(__has_attribute)
#if __has_attribute(error)
extern void ___nf_bpf_unreachable_reached(void)
        __attribute__((noreturn, error("__bpf_unreachable() is reachable: the optimiser "
	                               "could not remove this path (e.g. a non-constant "
	                               "bpf_tail_call_static slot)")));
#define __bpf_unreachable() ___nf_bpf_unreachable_reached()
#endif
#endif
#endif
#ifndef __bpf_unreachable
#define __bpf_unreachable() __builtin_trap()
#endif

/* ---- tail calls --------------------------------------------------------------
 * bpf_tail_call_static(ctx, &prog_array, 3): a tail call whose slot is a
 * compile-time constant.  Written in asm so that r2/r3 are loaded right
 * before the call on every path: the verifier then sees a constant key and
 * the x86-64 JIT can patch the call into a direct jump.
 */
#if defined(__clang__) && defined(__bpf__)
static __always_inline void bpf_tail_call_static(void *ctx, const void *map, const __u32 slot)
{
	if (!__builtin_constant_p(slot))
		__bpf_unreachable();

	/* r0-r5 are caller-saved in the BPF calling convention: all clobbered */
	asm volatile("r1 = %[ctx]\n\t"
	             "r2 = %[map]\n\t"
	             "r3 = %[slot]\n\t"
	             "call 12" ::[ctx] "r"(ctx),
	             [map] "r"(map), [slot] "i"(slot)
	             : "r0", "r1", "r2", "r3", "r4", "r5");
}
#endif

/* ---- bpf_printk ---------------------------------------------------------------
 * bpf_printk("fmt", args...) prints to /sys/kernel/tracing/trace_pipe.
 * Up to 3 arguments go through bpf_trace_printk, up to 12 through
 * bpf_trace_vprintk (kernel 5.16+).  The format string is a static const
 * (.rodata) unless BPF_NO_GLOBAL_DATA is defined, then it is built on the stack.
 */
#ifdef BPF_NO_GLOBAL_DATA
#define ___NF_PRINTK_FMT_STORAGE
#else
#define ___NF_PRINTK_FMT_STORAGE static const
#endif

/* ___nf_nth(_, args..., N12..N0) picks by the number of args (0..12) */
#define ___nf_nth(_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, N, ...) N
#define ___nf_narg(...) ___nf_nth(_, ##__VA_ARGS__, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)

#define ___nf_fill_0(a, i)
#define ___nf_fill_1(a, i, x) (a)[i] = (unsigned long long)(x);
#define ___nf_fill_2(a, i, x, ...)        \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_1(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill_3(a, i, x, ...)        \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_2(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill_4(a, i, x, ...)        \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_3(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill_5(a, i, x, ...)        \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_4(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill_6(a, i, x, ...)        \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_5(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill_7(a, i, x, ...)        \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_6(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill_8(a, i, x, ...)        \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_7(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill_9(a, i, x, ...)        \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_8(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill_10(a, i, x, ...)       \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_9(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill_11(a, i, x, ...)       \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_10(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill_12(a, i, x, ...)       \
	(a)[i] = (unsigned long long)(x); \
	___nf_fill_11(a, (i) + 1, __VA_ARGS__)
#define ___nf_fill(a, ...) ___nf_cat(___nf_fill_, ___nf_narg(__VA_ARGS__))(a, 0, ##__VA_ARGS__)

#define __bpf_printk(fmt, ...)                                                 \
	({                                                                     \
		___NF_PRINTK_FMT_STORAGE char ___nf_fmt[] = fmt;               \
		bpf_trace_printk(___nf_fmt, sizeof(___nf_fmt), ##__VA_ARGS__); \
	})

#define __bpf_vprintk(fmt, ...)                                                        \
	({                                                                             \
		___NF_PRINTK_FMT_STORAGE char ___nf_fmt[] = fmt;                       \
		unsigned long long ___nf_args[___nf_narg(__VA_ARGS__)];                \
		___nf_fill(___nf_args, __VA_ARGS__) bpf_trace_vprintk(                 \
		        ___nf_fmt, sizeof(___nf_fmt), ___nf_args, sizeof(___nf_args)); \
	})

#define ___nf_pick_printk(...)                                                                  \
	___nf_nth(_, ##__VA_ARGS__, __bpf_vprintk, __bpf_vprintk, __bpf_vprintk, __bpf_vprintk, \
	          __bpf_vprintk, __bpf_vprintk, __bpf_vprintk, __bpf_vprintk, __bpf_vprintk,    \
	          __bpf_printk, __bpf_printk, __bpf_printk, __bpf_printk)

#define bpf_printk(fmt, ...) ___nf_pick_printk(__VA_ARGS__)(fmt, ##__VA_ARGS__)

#endif /* __BPF_HELPERS__ */
