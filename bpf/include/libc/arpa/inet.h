/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nfpipe's <arpa/inet.h> for BPF programs: what POSIX puts here besides the
 * conversion functions, i.e. <netinet/in.h>'s types and htons() & co.
 * inet_pton(), inet_ntoa() and the rest are left out: a BPF program has no
 * libc to call, so a program using them fails to compile rather than to load.
 */
#ifndef _ARPA_INET_H
#define _ARPA_INET_H

#include <netinet/in.h>

#endif /* _ARPA_INET_H */
