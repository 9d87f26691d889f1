/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nfpipe's <string.h> for BPF programs: memcpy, memmove, memset and memcmp,
 * always inlined, so they never leave a call to a function no BPF object has.
 *
 * memcpy/memmove/memset go to the compiler's builtins: with a constant size
 * the BPF backend expands them into loads and stores, with a variable size it
 * stops with "A call to built-in function 'memcpy' is not supported" (there is
 * no libc to call).  They are functions rather than the usual
 * "#define memcpy __builtin_memcpy" because a freestanding compiler (the
 * ziglang wheel's, -ffreestanding) does not treat the plain names as builtins,
 * and a program may still declare or #define them itself after this header.
 *
 * memcmp is a byte loop: clang-14 (clang-19 expands it inline) and any clang
 * under -ffreestanding lower __builtin_memcmp to a call of memcmp.  With a
 * constant size the loop is unrolled or bounded, which the verifier accepts
 * (kernel 5.3+); it compares unsigned bytes and returns <0, 0 or >0 like
 * memcmp (-1, 0 or 1 here).
 *
 * Left out: the str* functions (no libc to call; __builtin_strlen of a literal
 * is a constant without any header) and everything that allocates or does I/O.
 */
#ifndef _STRING_H
#define _STRING_H

#include <stddef.h> /* size_t, NULL: the compiler's own header */

#ifndef memcpy
static inline __attribute__((always_inline)) void *memcpy(void *dst, const void *src, size_t n)
{
	return __builtin_memcpy(dst, src, n);
}
#endif

#ifndef memmove
static inline __attribute__((always_inline)) void *memmove(void *dst, const void *src, size_t n)
{
	return __builtin_memmove(dst, src, n);
}
#endif

#ifndef memset
static inline __attribute__((always_inline)) void *memset(void *dst, int c, size_t n)
{
	return __builtin_memset(dst, c, n);
}
#endif

#ifndef memcmp
static inline __attribute__((always_inline)) int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	size_t i;

	for (i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}
#endif

#endif /* _STRING_H */
