/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nfpipe's bpf_endian.h: byte-order conversions for BPF programs, with the
 * macro names of libbpf's <bpf/bpf_endian.h>.
 *
 *   bpf_htons / bpf_ntohs           16 bit
 *   bpf_htonl / bpf_ntohl           32 bit
 *   bpf_cpu_to_be64 / bpf_be64_to_cpu   64 bit
 *
 * Each picks at compile time between a macro that folds to a constant
 * expression (usable in 'case' labels and static initialisers) and a
 * __builtin_bswap* that the BPF backend turns into one byte-swap instruction.
 * The __bpf_constant_* forms are the constant ones, the __bpf_* forms the
 * runtime ones.  Self-contained: needs no other header.
 */
#ifndef __BPF_ENDIAN__
#define __BPF_ENDIAN__

/* Byte swaps written as plain expressions, so a constant argument gives a constant. */
#define ___nf_swab16(x)                                                            \
	((unsigned short)((((unsigned short)(x) & (unsigned short)0x00ffU) << 8) | \
	                  (((unsigned short)(x) & (unsigned short)0xff00U) >> 8)))

#define ___nf_swab32(x)                                             \
	((unsigned int)((((unsigned int)(x) & 0x000000ffU) << 24) | \
	                (((unsigned int)(x) & 0x0000ff00U) << 8) |  \
	                (((unsigned int)(x) & 0x00ff0000U) >> 8) |  \
	                (((unsigned int)(x) & 0xff000000U) >> 24)))

#define ___nf_swab64(x)                                                                   \
	((unsigned long long)((((unsigned long long)(x) & 0x00000000000000ffULL) << 56) | \
	                      (((unsigned long long)(x) & 0x000000000000ff00ULL) << 40) | \
	                      (((unsigned long long)(x) & 0x0000000000ff0000ULL) << 24) | \
	                      (((unsigned long long)(x) & 0x00000000ff000000ULL) << 8) |  \
	                      (((unsigned long long)(x) & 0x000000ff00000000ULL) >> 8) |  \
	                      (((unsigned long long)(x) & 0x0000ff0000000000ULL) >> 24) | \
	                      (((unsigned long long)(x) & 0x00ff000000000000ULL) >> 40) | \
	                      (((unsigned long long)(x) & 0xff00000000000000ULL) >> 56)))

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define __bpf_ntohs(x) __builtin_bswap16(x)
#define __bpf_htons(x) __builtin_bswap16(x)
#define __bpf_constant_ntohs(x) ___nf_swab16(x)
#define __bpf_constant_htons(x) ___nf_swab16(x)
#define __bpf_ntohl(x) __builtin_bswap32(x)
#define __bpf_htonl(x) __builtin_bswap32(x)
#define __bpf_constant_ntohl(x) ___nf_swab32(x)
#define __bpf_constant_htonl(x) ___nf_swab32(x)
#define __bpf_be64_to_cpu(x) __builtin_bswap64(x)
#define __bpf_cpu_to_be64(x) __builtin_bswap64(x)
#define __bpf_constant_be64_to_cpu(x) ___nf_swab64(x)
#define __bpf_constant_cpu_to_be64(x) ___nf_swab64(x)
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define __bpf_ntohs(x) ((unsigned short)(x))
#define __bpf_htons(x) ((unsigned short)(x))
#define __bpf_constant_ntohs(x) ((unsigned short)(x))
#define __bpf_constant_htons(x) ((unsigned short)(x))
#define __bpf_ntohl(x) ((unsigned int)(x))
#define __bpf_htonl(x) ((unsigned int)(x))
#define __bpf_constant_ntohl(x) ((unsigned int)(x))
#define __bpf_constant_htonl(x) ((unsigned int)(x))
#define __bpf_be64_to_cpu(x) ((unsigned long long)(x))
#define __bpf_cpu_to_be64(x) ((unsigned long long)(x))
#define __bpf_constant_be64_to_cpu(x) ((unsigned long long)(x))
#define __bpf_constant_cpu_to_be64(x) ((unsigned long long)(x))
#else
#error "bpf_endian.h: the compiler does not define __BYTE_ORDER__"
#endif

#define bpf_htons(x) (__builtin_constant_p(x) ? __bpf_constant_htons(x) : __bpf_htons(x))
#define bpf_ntohs(x) (__builtin_constant_p(x) ? __bpf_constant_ntohs(x) : __bpf_ntohs(x))
#define bpf_htonl(x) (__builtin_constant_p(x) ? __bpf_constant_htonl(x) : __bpf_htonl(x))
#define bpf_ntohl(x) (__builtin_constant_p(x) ? __bpf_constant_ntohl(x) : __bpf_ntohl(x))
#define bpf_cpu_to_be64(x) \
	(__builtin_constant_p(x) ? __bpf_constant_cpu_to_be64(x) : __bpf_cpu_to_be64(x))
#define bpf_be64_to_cpu(x) \
	(__builtin_constant_p(x) ? __bpf_constant_be64_to_cpu(x) : __bpf_be64_to_cpu(x))

#endif /* __BPF_ENDIAN__ */
