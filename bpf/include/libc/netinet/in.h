/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nfpipe's <netinet/in.h> for BPF programs: the IPv4/IPv6 address types and
 * IPPROTO_* numbers are the kernel's UAPI ones (<linux/in.h>, <linux/in6.h>),
 * so a program may include both this and the <linux/...> headers in any order
 * (with glibc's header that clashes unless glibc's comes first).  htons() &
 * co. are bpf_endian.h's, usable in constant expressions.
 *
 * Left out: in6addr_any & co. (variables a BPF object cannot import) and the
 * IN6_IS_ADDR_* macros.
 */
#ifndef _NETINET_IN_H
#define _NETINET_IN_H

#include <linux/types.h>
#include <sys/socket.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_endian.h>

typedef __u16 in_port_t;
typedef __u32 in_addr_t;

#define INET_ADDRSTRLEN 16
#define INET6_ADDRSTRLEN 46

#define htons(x) bpf_htons(x)
#define ntohs(x) bpf_ntohs(x)
#define htonl(x) bpf_htonl(x)
#define ntohl(x) bpf_ntohl(x)

#endif /* _NETINET_IN_H */
