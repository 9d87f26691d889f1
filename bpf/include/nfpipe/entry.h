/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The program of one node in tail-call (and standalone) mode.  nfpipe's build
 * writes a wrapper that defines NFP_HOOK_*, NFP_INSTANCE and includes the NF
 * source followed by this file; it emits
 *
 *     SEC("xdp" or "tc") int <instance>(ctx)
 *
 * which runs <instance>__process() and then follows the node's port table:
 * a port wired to another node tail-calls that node's slot in nfp_jmp; a port
 * wired to a verdict ends the pipeline.  The table, the node's index and
 * whether it is the pipeline's entry are load-time constants the pipeline
 * sets; built alone (standalone), every port passes and the NF's raw result
 * is left in nfp_last_result for tests.
 */
#include <nfpipe/pipeline.h>

/* Port table: >= 0 a slot of nfp_jmp, < 0 a verdict (NFP_PASS ...). */
NFP_CONST(__s32, nfp_ports)
[NFP_MAX_PORTS] = {
	NFP_PASS, NFP_PASS, NFP_PASS, NFP_PASS, NFP_PASS, NFP_PASS, NFP_PASS, NFP_PASS,
};
NFP_CONST(__u32, nfp_redirect)[NFP_MAX_PORTS] = {}; /* ifindex of a port wired to redirect */
NFP_CONST(__u32, nfp_node) = 0;                     /* index into nfp_stats */
NFP_CONST(__u32, nfp_is_entry) = 1;                 /* the first node clears the metadata */
NFP_CONST(__s32, nfp_miss_verdict) = NFP_DROP;      /* when the tail call finds no program */

#ifdef NFP_STANDALONE
__s32 nfp_last_result; /* the NF's port or verdict, for tests */
#endif

/*
 * Tail-call the node in `slot` of nfp_jmp.  Each port has its own call site, and
 * its slot is a load-time constant the verifier reads as a constant: the JIT then
 * emits a direct jump, patched whenever the slot's program changes, instead of an
 * indirect one (a retpoline where Spectre v2 mitigations are on).  Inline asm,
 * because the compiler would otherwise merge the call sites into one whose slot
 * is no longer a constant.
 */
static __always_inline void nfp__tail_call(nfp_hook_ctx_t *hook, __s32 slot)
{
	asm volatile("r1 = %[hook]\n\t"
	             "r2 = %[map]\n\t"
	             "r3 = %[slot]\n\t"
	             "call 12\n\t"
	             :
	             : [hook] "r"(hook), [map] "r"(&nfp_jmp), [slot] "r"(slot)
	             : "r0", "r1", "r2", "r3", "r4", "r5", "memory");
}

#define NFP__JUMP(i)                                                 \
	case i:                                                      \
		if (NFP_CFG(nfp_ports)[i] >= 0)                      \
			nfp__tail_call(hook, NFP_CFG(nfp_ports)[i]); \
		break

SEC(NFP_HOOK_NAME)
int NFP_INSTANCE(nfp_hook_ctx_t *hook)
{
	struct nfp_ctx ctx;
	struct nfp_meta *meta;
	__u32 zero = 0, len;
	__s32 target;
	int r;

	nfp_ctx_init(&ctx, hook);
	meta = bpf_map_lookup_elem(&nfp_meta_map, &zero);
	if (!meta)
		return nfp_hook_verdict(&ctx, 0, NFP_ABORTED);
	if (NFP_CFG(nfp_is_entry))
		__builtin_memset(meta, 0, sizeof(*meta));
	meta->hops++;
	len = nfp_opaque(nfp_pkt_len(&ctx)); /* now: else the packet pointers live across the NF */

	r = NFP_NAME(process)(&ctx, meta);
	/* What the compiler knows of r it may compute with tricks the verifier cannot
	 * bound: make it check r's range below as written. */
	asm volatile("" : "+r"(r));

#ifdef NFP_STANDALONE
	nfp_last_result = r;
#endif
	nfp_count(NFP_CFG(nfp_node), nfp_outcome_slot(r), len);
	if (r >= 0 && r < NFP_MAX_PORTS) {
		target = NFP_CFG(nfp_ports)[r];
		if (target == NFP_REDIRECT)
			meta->redirect_ifindex = NFP_CFG(nfp_redirect)[r];
	} else if (r < 0 && r >= NFP_VERDICT_MIN)
		target = r;
	else
		target = NFP_ABORTED; /* a port the NF does not have */
	if (target >= 0) {
		switch (r) { /* NFP_MAX_PORTS sites */
			NFP__JUMP(0);
			NFP__JUMP(1);
			NFP__JUMP(2);
			NFP__JUMP(3);
			NFP__JUMP(4);
			NFP__JUMP(5);
			NFP__JUMP(6);
			NFP__JUMP(7);
		}
		nfp_count(NFP_CFG(nfp_node), NFP_STAT_MISS, len);
		target = NFP_CFG(nfp_miss_verdict);
	}
	return nfp_hook_verdict(&ctx, meta, target);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
