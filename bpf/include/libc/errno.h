/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nfpipe's <errno.h> for BPF programs: the E* numbers, from the kernel's UAPI
 * (the values helpers return negated, e.g. -ENOENT from bpf_map_delete_elem).
 * There is no errno variable: a BPF program has no libc that would set it.
 */
#ifndef _ERRNO_H
#define _ERRNO_H

#include <linux/errno.h>

#endif /* _ERRNO_H */
