/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nfpipe's <sys/socket.h> for BPF programs: the types and constants of the
 * libc header, none of its functions (a BPF program cannot call socket(2) and
 * friends; a call would be left for a loader that cannot resolve it).
 *
 * UAPI headers include it: <linux/if.h> for struct sockaddr (struct ifreq),
 * <linux/vm_sockets.h> and <linux/mptcp.h> too.  Programs use AF_* with
 * bpf_fib_lookup() and struct bpf_sock_tuple, SOL_SOCKET and SO_* (from the
 * UAPI <asm/socket.h>, as glibc's header does) with bpf_setsockopt().
 */
#ifndef _SYS_SOCKET_H
#define _SYS_SOCKET_H

#include <linux/types.h>
#include <linux/socket.h> /* __kernel_sa_family_t */
#include <asm/socket.h>   /* SOL_SOCKET, SO_* */

typedef __kernel_sa_family_t sa_family_t;
typedef __u32 socklen_t;

struct sockaddr {
	sa_family_t sa_family;
	char sa_data[14];
};

/* large and aligned enough for any address family's sockaddr (128 bytes) */
struct sockaddr_storage {
	sa_family_t ss_family;
	char __ss_data[128 - sizeof(sa_family_t)];
} __attribute__((aligned(sizeof(long))));

/* socket types; MIPS numbers the first two the other way round (its kernel
 * and glibc say so), and a BPF target knows its kernel's arch only from
 * __TARGET_ARCH_ */
#ifdef __TARGET_ARCH_mips
#define SOCK_DGRAM 1
#define SOCK_STREAM 2
#else
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#endif
#define SOCK_RAW 3
#define SOCK_RDM 4
#define SOCK_SEQPACKET 5
#define SOCK_DCCP 6
#define SOCK_PACKET 10

/* address families, the kernel's numbering (include/linux/socket.h) */
#define AF_UNSPEC 0
#define AF_UNIX 1
#define AF_LOCAL AF_UNIX
#define AF_INET 2
#define AF_AX25 3
#define AF_IPX 4
#define AF_APPLETALK 5
#define AF_NETROM 6
#define AF_BRIDGE 7
#define AF_ATMPVC 8
#define AF_X25 9
#define AF_INET6 10
#define AF_ROSE 11
#define AF_DECnet 12
#define AF_NETBEUI 13
#define AF_SECURITY 14
#define AF_KEY 15
#define AF_NETLINK 16
#define AF_ROUTE AF_NETLINK
#define AF_PACKET 17
#define AF_ASH 18
#define AF_ECONET 19
#define AF_ATMSVC 20
#define AF_RDS 21
#define AF_SNA 22
#define AF_IRDA 23
#define AF_PPPOX 24
#define AF_WANPIPE 25
#define AF_LLC 26
#define AF_IB 27
#define AF_MPLS 28
#define AF_CAN 29
#define AF_TIPC 30
#define AF_BLUETOOTH 31
#define AF_IUCV 32
#define AF_RXRPC 33
#define AF_ISDN 34
#define AF_PHONET 35
#define AF_IEEE802154 36
#define AF_CAIF 37
#define AF_ALG 38
#define AF_NFC 39
#define AF_VSOCK 40
#define AF_KCM 41
#define AF_QIPCRTR 42
#define AF_SMC 43
#define AF_XDP 44
#define AF_MCTP 45
#define AF_MAX 46

/* protocol families: the same numbers */
#define PF_UNSPEC AF_UNSPEC
#define PF_UNIX AF_UNIX
#define PF_LOCAL AF_LOCAL
#define PF_INET AF_INET
#define PF_AX25 AF_AX25
#define PF_IPX AF_IPX
#define PF_APPLETALK AF_APPLETALK
#define PF_NETROM AF_NETROM
#define PF_BRIDGE AF_BRIDGE
#define PF_ATMPVC AF_ATMPVC
#define PF_X25 AF_X25
#define PF_INET6 AF_INET6
#define PF_ROSE AF_ROSE
#define PF_DECnet AF_DECnet
#define PF_NETBEUI AF_NETBEUI
#define PF_SECURITY AF_SECURITY
#define PF_KEY AF_KEY
#define PF_NETLINK AF_NETLINK
#define PF_ROUTE AF_ROUTE
#define PF_PACKET AF_PACKET
#define PF_ASH AF_ASH
#define PF_ECONET AF_ECONET
#define PF_ATMSVC AF_ATMSVC
#define PF_RDS AF_RDS
#define PF_SNA AF_SNA
#define PF_IRDA AF_IRDA
#define PF_PPPOX AF_PPPOX
#define PF_WANPIPE AF_WANPIPE
#define PF_LLC AF_LLC
#define PF_IB AF_IB
#define PF_MPLS AF_MPLS
#define PF_CAN AF_CAN
#define PF_TIPC AF_TIPC
#define PF_BLUETOOTH AF_BLUETOOTH
#define PF_IUCV AF_IUCV
#define PF_RXRPC AF_RXRPC
#define PF_ISDN AF_ISDN
#define PF_PHONET AF_PHONET
#define PF_IEEE802154 AF_IEEE802154
#define PF_CAIF AF_CAIF
#define PF_ALG AF_ALG
#define PF_NFC AF_NFC
#define PF_VSOCK AF_VSOCK
#define PF_KCM AF_KCM
#define PF_QIPCRTR AF_QIPCRTR
#define PF_SMC AF_SMC
#define PF_XDP AF_XDP
#define PF_MCTP AF_MCTP
#define PF_MAX AF_MAX

#endif /* _SYS_SOCKET_H */
