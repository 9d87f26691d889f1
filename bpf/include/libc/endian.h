/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nfpipe's <endian.h> for BPF programs: the byte-order names of glibc's and
 * POSIX.1-2024's header, for programs (and headers they share with user space)
 * that test the byte order or convert with htobe16() & co.
 *
 *   __LITTLE_ENDIAN __BIG_ENDIAN __PDP_ENDIAN   1234, 4321, 3412
 *   __BYTE_ORDER __FLOAT_WORD_ORDER             the target's: one of the above
 *   LITTLE_ENDIAN BIG_ENDIAN PDP_ENDIAN BYTE_ORDER   the same without underscores
 *   htobe16/32/64 htole16/32/64 be16/32/64toh le16/32/64toh
 *
 * The byte order is the compiler's (__BYTE_ORDER__ of -target bpfel or
 * bpfeb), which is the kernel's.  The numbers are glibc's and the kernel's
 * (<linux/byteorder/little_endian.h> defines __LITTLE_ENDIAN 1234 too), so
 * the definitions agree whichever header comes first.  A conversion of a
 * constant is a constant expression (usable in 'case' labels), as with
 * bpf_endian.h, whose macros do the swapping.
 *
 * Left out: glibc's __bswap_16() & co. (its own internal names) and the
 * BSD be16dec() family.
 */
#ifndef _ENDIAN_H
#define _ENDIAN_H

#include <bpf/bpf_endian.h>

#define __LITTLE_ENDIAN 1234
#define __BIG_ENDIAN 4321
#define __PDP_ENDIAN 3412

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define __BYTE_ORDER __LITTLE_ENDIAN
#else
#define __BYTE_ORDER __BIG_ENDIAN
#endif
#define __FLOAT_WORD_ORDER __BYTE_ORDER

#define LITTLE_ENDIAN __LITTLE_ENDIAN
#define BIG_ENDIAN __BIG_ENDIAN
#define PDP_ENDIAN __PDP_ENDIAN
#define BYTE_ORDER __BYTE_ORDER

/* to and from big endian: network order, what bpf_endian.h converts to */
#define htobe16(x) bpf_htons(x)
#define be16toh(x) bpf_ntohs(x)
#define htobe32(x) bpf_htonl(x)
#define be32toh(x) bpf_ntohl(x)
#define htobe64(x) bpf_cpu_to_be64(x)
#define be64toh(x) bpf_be64_to_cpu(x)

/* to and from little endian: a swap exactly where the big-endian forms have none */
#if __BYTE_ORDER == __LITTLE_ENDIAN
#define htole16(x) ((unsigned short)(x))
#define le16toh(x) ((unsigned short)(x))
#define htole32(x) ((unsigned int)(x))
#define le32toh(x) ((unsigned int)(x))
#define htole64(x) ((unsigned long long)(x))
#define le64toh(x) ((unsigned long long)(x))
#else
#define htole16(x) (__builtin_constant_p(x) ? ___nf_swab16(x) : __builtin_bswap16(x))
#define le16toh(x) htole16(x)
#define htole32(x) (__builtin_constant_p(x) ? ___nf_swab32(x) : __builtin_bswap32(x))
#define le32toh(x) htole32(x)
#define htole64(x) (__builtin_constant_p(x) ? ___nf_swab64(x) : __builtin_bswap64(x))
#define le64toh(x) htole64(x)
#endif

#endif /* _ENDIAN_H */
