/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GENERATED FILE, do not edit: regenerate with
 *   python bpf/tools/helpergen.py -o bpf/include/bpf/bpf_helper_defs.h
 * from ziglang 0.17.1 wheel: lib/libc/include/any-linux-any/linux/bpf.h
 * (sha256 3781059053750620b1a4af84b4b44be8f1b13584b82a818eee08efb2f10bcd3a).
 * 211 helpers, ids 1..211.
 *
 * Each helper is a constant function pointer whose value is the helper id;
 * the BPF backend compiles a call through it into 'call <id>'.  Include
 * <bpf/bpf_helpers.h> rather than this file.
 */
#ifndef __NFPIPE_BPF_HELPER_DEFS_H
#define __NFPIPE_BPF_HELPER_DEFS_H

/* Structs the helpers take pointers to. */
struct __sk_buff;
struct bpf_dynptr;
struct bpf_fib_lookup;
struct bpf_perf_event_data;
struct bpf_perf_event_value;
struct bpf_pidns_info;
struct bpf_redir_neigh;
struct bpf_sk_lookup;
struct bpf_sock;
struct bpf_sock_addr;
struct bpf_sock_ops;
struct bpf_sock_tuple;
struct bpf_spin_lock;
struct bpf_sysctl;
struct bpf_tcp_sock;
struct bpf_timer;
struct bpf_tunnel_key;
struct bpf_xfrm_state;
struct btf_ptr;
struct cgroup;
struct file;
struct inode;
struct iphdr;
struct ipv6hdr;
struct linux_binprm;
struct mptcp_sock;
struct path;
struct pt_regs;
struct seq_file;
struct sk_msg_md;
struct sk_reuseport_md;
struct sock;
struct sockaddr;
struct socket;
struct task_struct;
struct tcp6_sock;
struct tcp_request_sock;
struct tcp_sock;
struct tcp_timewait_sock;
struct tcphdr;
struct udp6_sock;
struct unix_sock;
struct xdp_md;

/* bpf_map_lookup_elem (1): Perform a lookup in map for an entry associated to key. */
static void *(* const bpf_map_lookup_elem)(void *map, const void *key) = (void *) 1;

/* bpf_map_update_elem (2): Add or update the value of the entry associated to key in map with value. */
static long (* const bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *) 2;

/* bpf_map_delete_elem (3): Delete entry with key from map. */
static long (* const bpf_map_delete_elem)(void *map, const void *key) = (void *) 3;

/* bpf_probe_read (4): For tracing programs, safely attempt to read size bytes from kernel space address unsafe_ptr and store the data in dst. */
static long (* const bpf_probe_read)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 4;

/* bpf_ktime_get_ns (5): Return the time elapsed since system boot, in nanoseconds. */
static __u64 (* const bpf_ktime_get_ns)(void) = (void *) 5;

/* bpf_trace_printk (6): This helper is a "printk()-like" facility for debugging. */
static long (* const bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *) 6;

/* bpf_get_prandom_u32 (7): Get a pseudo-random number. */
static __u32 (* const bpf_get_prandom_u32)(void) = (void *) 7;

/* bpf_get_smp_processor_id (8): Get the SMP (symmetric multiprocessing) processor id. */
static __u32 (* const bpf_get_smp_processor_id)(void) = (void *) 8;

/* bpf_skb_store_bytes (9): Store len bytes from address from into the packet associated to skb, at offset. */
static long (* const bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 offset, const void *from, __u32 len, __u64 flags) = (void *) 9;

/* bpf_l3_csum_replace (10): Recompute the layer 3 (e.g. */
static long (* const bpf_l3_csum_replace)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to, __u64 size) = (void *) 10;

/* bpf_l4_csum_replace (11): Recompute the layer 4 (e.g. */
static long (* const bpf_l4_csum_replace)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to, __u64 flags) = (void *) 11;

/* bpf_tail_call (12): This special helper is used to trigger a "tail call", or in other words, to jump into another eBPF program. */
static long (* const bpf_tail_call)(void *ctx, void *prog_array_map, __u32 index) = (void *) 12;

/* bpf_clone_redirect (13): Clone and redirect the packet associated to skb to another net device of index ifindex. */
static long (* const bpf_clone_redirect)(struct __sk_buff *skb, __u32 ifindex, __u64 flags) = (void *) 13;

/* bpf_get_current_pid_tgid (14): Get the current pid and tgid. */
static __u64 (* const bpf_get_current_pid_tgid)(void) = (void *) 14;

/* bpf_get_current_uid_gid (15): Get the current uid and gid. */
static __u64 (* const bpf_get_current_uid_gid)(void) = (void *) 15;

/* bpf_get_current_comm (16): Copy the comm attribute of the current task into buf of size_of_buf. */
static long (* const bpf_get_current_comm)(void *buf, __u32 size_of_buf) = (void *) 16;

/* bpf_get_cgroup_classid (17): Retrieve the classid for the current task, i.e. */
static __u32 (* const bpf_get_cgroup_classid)(struct __sk_buff *skb) = (void *) 17;

/* bpf_skb_vlan_push (18): Push a vlan_tci (VLAN tag control information) of protocol vlan_proto to the packet associated to skb, then update the checksum. */
static long (* const bpf_skb_vlan_push)(struct __sk_buff *skb, __be16 vlan_proto, __u16 vlan_tci) = (void *) 18;

/* bpf_skb_vlan_pop (19): Pop a VLAN header from the packet associated to skb. */
static long (* const bpf_skb_vlan_pop)(struct __sk_buff *skb) = (void *) 19;

/* bpf_skb_get_tunnel_key (20): Get tunnel metadata. */
static long (* const bpf_skb_get_tunnel_key)(struct __sk_buff *skb, struct bpf_tunnel_key *key, __u32 size, __u64 flags) = (void *) 20;

/* bpf_skb_set_tunnel_key (21): Populate tunnel metadata for packet associated to skb. */
static long (* const bpf_skb_set_tunnel_key)(struct __sk_buff *skb, struct bpf_tunnel_key *key, __u32 size, __u64 flags) = (void *) 21;

/* bpf_perf_event_read (22): Read the value of a perf event counter. */
static __u64 (* const bpf_perf_event_read)(void *map, __u64 flags) = (void *) 22;

/* bpf_redirect (23): Redirect the packet to another net device of index ifindex. */
static long (* const bpf_redirect)(__u32 ifindex, __u64 flags) = (void *) 23;

/* bpf_get_route_realm (24): Retrieve the realm or the route, that is to say the tclassid field of the destination for the skb. */
static __u32 (* const bpf_get_route_realm)(struct __sk_buff *skb) = (void *) 24;

/* bpf_perf_event_output (25): Write raw data blob into a special BPF perf event held by map of type BPF_MAP_TYPE_PERF_EVENT_ARRAY. */
static long (* const bpf_perf_event_output)(void *ctx, void *map, __u64 flags, void *data, __u64 size) = (void *) 25;

/* bpf_skb_load_bytes (26): This helper was provided as an easy way to load data from a packet. */
static long (* const bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to, __u32 len) = (void *) 26;

/* bpf_get_stackid (27): Walk a user or a kernel stack and return its id. */
static long (* const bpf_get_stackid)(void *ctx, void *map, __u64 flags) = (void *) 27;

/* bpf_csum_diff (28): Compute a checksum difference, from the raw buffer pointed by from, of length from_size (that must be a multiple of 4), towards the raw buffer pointed by to,... */
static __s64 (* const bpf_csum_diff)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size, __wsum seed) = (void *) 28;

/* bpf_skb_get_tunnel_opt (29): Retrieve tunnel options metadata for the packet associated to skb, and store the raw tunnel option data to the buffer opt of size. */
static long (* const bpf_skb_get_tunnel_opt)(struct __sk_buff *skb, void *opt, __u32 size) = (void *) 29;

/* bpf_skb_set_tunnel_opt (30): Set tunnel options metadata for the packet associated to skb to the option data contained in the raw buffer opt of size. */
static long (* const bpf_skb_set_tunnel_opt)(struct __sk_buff *skb, void *opt, __u32 size) = (void *) 30;

/* bpf_skb_change_proto (31): Change the protocol of the skb to proto. */
static long (* const bpf_skb_change_proto)(struct __sk_buff *skb, __be16 proto, __u64 flags) = (void *) 31;

/* bpf_skb_change_type (32): Change the packet type for the packet associated to skb. */
static long (* const bpf_skb_change_type)(struct __sk_buff *skb, __u32 type) = (void *) 32;

/* bpf_skb_under_cgroup (33): Check whether skb is a descendant of the cgroup2 held by map of type BPF_MAP_TYPE_CGROUP_ARRAY, at index. */
static long (* const bpf_skb_under_cgroup)(struct __sk_buff *skb, void *map, __u32 index) = (void *) 33;

/* bpf_get_hash_recalc (34): Retrieve the hash of the packet, skb->hash. */
static __u32 (* const bpf_get_hash_recalc)(struct __sk_buff *skb) = (void *) 34;

/* bpf_get_current_task (35): Get the current task. */
static __u64 (* const bpf_get_current_task)(void) = (void *) 35;

/* bpf_probe_write_user (36): Attempt in a safe way to write len bytes from the buffer src to dst in memory. */
static long (* const bpf_probe_write_user)(void *dst, const void *src, __u32 len) = (void *) 36;

/* bpf_current_task_under_cgroup (37): Check whether the probe is being run is the context of a given subset of the cgroup2 hierarchy. */
static long (* const bpf_current_task_under_cgroup)(void *map, __u32 index) = (void *) 37;

/* bpf_skb_change_tail (38): Resize (trim or grow) the packet associated to skb to the new len. */
static long (* const bpf_skb_change_tail)(struct __sk_buff *skb, __u32 len, __u64 flags) = (void *) 38;

/* bpf_skb_pull_data (39): Pull in non-linear data in case the skb is non-linear and not all of len are part of the linear section. */
static long (* const bpf_skb_pull_data)(struct __sk_buff *skb, __u32 len) = (void *) 39;

/* bpf_csum_update (40): Add the checksum csum into skb->csum in case the driver has supplied a checksum for the entire packet into that field. */
static __s64 (* const bpf_csum_update)(struct __sk_buff *skb, __wsum csum) = (void *) 40;

/* bpf_set_hash_invalid (41): Invalidate the current skb->hash. */
static void (* const bpf_set_hash_invalid)(struct __sk_buff *skb) = (void *) 41;

/* bpf_get_numa_node_id (42): Return the id of the current NUMA node. */
static long (* const bpf_get_numa_node_id)(void) = (void *) 42;

/* bpf_skb_change_head (43): Grows headroom of packet associated to skb and adjusts the offset of the MAC header accordingly, adding len bytes of space. */
static long (* const bpf_skb_change_head)(struct __sk_buff *skb, __u32 len, __u64 flags) = (void *) 43;

/* bpf_xdp_adjust_head (44): Adjust (move) xdp_md->data by delta bytes. */
static long (* const bpf_xdp_adjust_head)(struct xdp_md *xdp_md, int delta) = (void *) 44;

/* bpf_probe_read_str (45): Copy a NUL terminated string from an unsafe kernel address unsafe_ptr to dst. */
static long (* const bpf_probe_read_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 45;

/* bpf_get_socket_cookie (46): If the struct sk_buff pointed by skb has a known socket, retrieve the cookie (generated by the kernel) of this socket. */
static __u64 (* const bpf_get_socket_cookie)(void *ctx) = (void *) 46;

/* bpf_get_socket_uid (47): Get the owner UID of the socked associated to skb. */
static __u32 (* const bpf_get_socket_uid)(struct __sk_buff *skb) = (void *) 47;

/* bpf_set_hash (48): Set the full hash for skb (set the field skb->hash) to value hash. */
static long (* const bpf_set_hash)(struct __sk_buff *skb, __u32 hash) = (void *) 48;

/* bpf_setsockopt (49): Emulate a call to setsockopt() on the socket associated to bpf_socket, which must be a full socket. */
static long (* const bpf_setsockopt)(void *bpf_socket, int level, int optname, void *optval, int optlen) = (void *) 49;

/* bpf_skb_adjust_room (50): Grow or shrink the room for data in the packet associated to skb by len_diff, and according to the selected mode. */
static long (* const bpf_skb_adjust_room)(struct __sk_buff *skb, __s32 len_diff, __u32 mode, __u64 flags) = (void *) 50;

/* bpf_redirect_map (51): Redirect the packet to the endpoint referenced by map at index key. */
static long (* const bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *) 51;

/* bpf_sk_redirect_map (52): Redirect the packet to the socket referenced by map (of type BPF_MAP_TYPE_SOCKMAP) at index key. */
static long (* const bpf_sk_redirect_map)(struct __sk_buff *skb, void *map, __u32 key, __u64 flags) = (void *) 52;

/* bpf_sock_map_update (53): Add an entry to, or update a map referencing sockets. */
static long (* const bpf_sock_map_update)(struct bpf_sock_ops *skops, void *map, void *key, __u64 flags) = (void *) 53;

/* bpf_xdp_adjust_meta (54): Adjust the address pointed by xdp_md->data_meta by delta (which can be positive or negative). */
static long (* const bpf_xdp_adjust_meta)(struct xdp_md *xdp_md, int delta) = (void *) 54;

/* bpf_perf_event_read_value (55): Read the value of a perf event counter, and store it into buf of size buf_size. */
static long (* const bpf_perf_event_read_value)(void *map, __u64 flags, struct bpf_perf_event_value *buf, __u32 buf_size) = (void *) 55;

/* bpf_perf_prog_read_value (56): For an eBPF program attached to a perf event, retrieve the value of the event counter associated to ctx and store it in the structure pointed by buf and of s... */
static long (* const bpf_perf_prog_read_value)(struct bpf_perf_event_data *ctx, struct bpf_perf_event_value *buf, __u32 buf_size) = (void *) 56;

/* bpf_getsockopt (57): Emulate a call to getsockopt() on the socket associated to bpf_socket, which must be a full socket. */
static long (* const bpf_getsockopt)(void *bpf_socket, int level, int optname, void *optval, int optlen) = (void *) 57;

/* bpf_override_return (58): Used for error injection, this helper uses kprobes to override the return value of the probed function, and to set it to rc. */
static long (* const bpf_override_return)(struct pt_regs *regs, __u64 rc) = (void *) 58;

/* bpf_sock_ops_cb_flags_set (59): Attempt to set the value of the bpf_sock_ops_cb_flags field for the full TCP socket associated to bpf_sock_ops to argval. */
static long (* const bpf_sock_ops_cb_flags_set)(struct bpf_sock_ops *bpf_sock, int argval) = (void *) 59;

/* bpf_msg_redirect_map (60): This helper is used in programs implementing policies at the socket level. */
static long (* const bpf_msg_redirect_map)(struct sk_msg_md *msg, void *map, __u32 key, __u64 flags) = (void *) 60;

/* bpf_msg_apply_bytes (61): For socket policies, apply the verdict of the eBPF program to the next bytes (number of bytes) of message msg. */
static long (* const bpf_msg_apply_bytes)(struct sk_msg_md *msg, __u32 bytes) = (void *) 61;

/* bpf_msg_cork_bytes (62): For socket policies, prevent the execution of the verdict eBPF program for message msg until bytes (byte number) have been accumulated. */
static long (* const bpf_msg_cork_bytes)(struct sk_msg_md *msg, __u32 bytes) = (void *) 62;

/* bpf_msg_pull_data (63): For socket policies, pull in non-linear data from user space for msg and set pointers msg->data and msg->data_end to start and end bytes offsets into msg, re... */
static long (* const bpf_msg_pull_data)(struct sk_msg_md *msg, __u32 start, __u32 end, __u64 flags) = (void *) 63;

/* bpf_bind (64): Bind the socket associated to ctx to the address pointed by addr, of length addr_len. */
static long (* const bpf_bind)(struct bpf_sock_addr *ctx, struct sockaddr *addr, int addr_len) = (void *) 64;

/* bpf_xdp_adjust_tail (65): Adjust (move) xdp_md->data_end by delta bytes. */
static long (* const bpf_xdp_adjust_tail)(struct xdp_md *xdp_md, int delta) = (void *) 65;

/* bpf_skb_get_xfrm_state (66): Retrieve the XFRM state (IP transform framework, see also ip-xfrm(8)) at index in XFRM "security path" for skb. */
static long (* const bpf_skb_get_xfrm_state)(struct __sk_buff *skb, __u32 index, struct bpf_xfrm_state *xfrm_state, __u32 size, __u64 flags) = (void *) 66;

/* bpf_get_stack (67): Return a user or a kernel stack in bpf program provided buffer. */
static long (* const bpf_get_stack)(void *ctx, void *buf, __u32 size, __u64 flags) = (void *) 67;

/* bpf_skb_load_bytes_relative (68): This helper is similar to bpf_skb_load_bytes() in that it provides an easy way to load len bytes from offset from the packet associated to skb, into the buff... */
static long (* const bpf_skb_load_bytes_relative)(const void *skb, __u32 offset, void *to, __u32 len, __u32 start_header) = (void *) 68;

/* bpf_fib_lookup (69): Do FIB lookup in kernel tables using parameters in params. */
static long (* const bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params, int plen, __u32 flags) = (void *) 69;

/* bpf_sock_hash_update (70): Add an entry to, or update a sockhash map referencing sockets. */
static long (* const bpf_sock_hash_update)(struct bpf_sock_ops *skops, void *map, void *key, __u64 flags) = (void *) 70;

/* bpf_msg_redirect_hash (71): This helper is used in programs implementing policies at the socket level. */
static long (* const bpf_msg_redirect_hash)(struct sk_msg_md *msg, void *map, void *key, __u64 flags) = (void *) 71;

/* bpf_sk_redirect_hash (72): This helper is used in programs implementing policies at the skb socket level. */
static long (* const bpf_sk_redirect_hash)(struct __sk_buff *skb, void *map, void *key, __u64 flags) = (void *) 72;

/* bpf_lwt_push_encap (73): Encapsulate the packet associated to skb within a Layer 3 protocol header. */
static long (* const bpf_lwt_push_encap)(struct __sk_buff *skb, __u32 type, void *hdr, __u32 len) = (void *) 73;

/* bpf_lwt_seg6_store_bytes (74): Store len bytes from address from into the packet associated to skb, at offset. */
static long (* const bpf_lwt_seg6_store_bytes)(struct __sk_buff *skb, __u32 offset, const void *from, __u32 len) = (void *) 74;

/* bpf_lwt_seg6_adjust_srh (75): Adjust the size allocated to TLVs in the outermost IPv6 Segment Routing Header contained in the packet associated to skb, at position offset by delta bytes. */
static long (* const bpf_lwt_seg6_adjust_srh)(struct __sk_buff *skb, __u32 offset, __s32 delta) = (void *) 75;

/* bpf_lwt_seg6_action (76): Apply an IPv6 Segment Routing action of type action to the packet associated to skb. */
static long (* const bpf_lwt_seg6_action)(struct __sk_buff *skb, __u32 action, void *param, __u32 param_len) = (void *) 76;

/* bpf_rc_repeat (77): This helper is used in programs implementing IR decoding, to report a successfully decoded repeat key message. */
static long (* const bpf_rc_repeat)(void *ctx) = (void *) 77;

/* bpf_rc_keydown (78): This helper is used in programs implementing IR decoding, to report a successfully decoded key press with scancode, toggle value in the given protocol. */
static long (* const bpf_rc_keydown)(void *ctx, __u32 protocol, __u64 scancode, __u32 toggle) = (void *) 78;

/* bpf_skb_cgroup_id (79): Return the cgroup v2 id of the socket associated with the skb. */
static __u64 (* const bpf_skb_cgroup_id)(struct __sk_buff *skb) = (void *) 79;

/* bpf_get_current_cgroup_id (80): Get the current cgroup id based on the cgroup within which the current task is running. */
static __u64 (* const bpf_get_current_cgroup_id)(void) = (void *) 80;

/* bpf_get_local_storage (81): Get the pointer to the local storage area. */
static void *(* const bpf_get_local_storage)(void *map, __u64 flags) = (void *) 81;

/* bpf_sk_select_reuseport (82): Select a SO_REUSEPORT socket from a BPF_MAP_TYPE_REUSEPORT_SOCKARRAY map. */
static long (* const bpf_sk_select_reuseport)(struct sk_reuseport_md *reuse, void *map, void *key, __u64 flags) = (void *) 82;

/* bpf_skb_ancestor_cgroup_id (83): Return id of cgroup v2 that is ancestor of cgroup associated with the skb at the ancestor_level. */
static __u64 (* const bpf_skb_ancestor_cgroup_id)(struct __sk_buff *skb, int ancestor_level) = (void *) 83;

/* bpf_sk_lookup_tcp (84): Look for TCP socket matching tuple, optionally in a child network namespace netns. */
static struct bpf_sock *(* const bpf_sk_lookup_tcp)(void *ctx, struct bpf_sock_tuple *tuple, __u32 tuple_size, __u64 netns, __u64 flags) = (void *) 84;

/* bpf_sk_lookup_udp (85): Look for UDP socket matching tuple, optionally in a child network namespace netns. */
static struct bpf_sock *(* const bpf_sk_lookup_udp)(void *ctx, struct bpf_sock_tuple *tuple, __u32 tuple_size, __u64 netns, __u64 flags) = (void *) 85;

/* bpf_sk_release (86): Release the reference held by sock. */
static long (* const bpf_sk_release)(void *sock) = (void *) 86;

/* bpf_map_push_elem (87): Push an element value in map. */
static long (* const bpf_map_push_elem)(void *map, const void *value, __u64 flags) = (void *) 87;

/* bpf_map_pop_elem (88): Pop an element from map. */
static long (* const bpf_map_pop_elem)(void *map, void *value) = (void *) 88;

/* bpf_map_peek_elem (89): Get an element from map without removing it. */
static long (* const bpf_map_peek_elem)(void *map, void *value) = (void *) 89;

/* bpf_msg_push_data (90): For socket policies, insert len bytes into msg at offset start. */
static long (* const bpf_msg_push_data)(struct sk_msg_md *msg, __u32 start, __u32 len, __u64 flags) = (void *) 90;

/* bpf_msg_pop_data (91): Will remove len bytes from a msg starting at byte start. */
static long (* const bpf_msg_pop_data)(struct sk_msg_md *msg, __u32 start, __u32 len, __u64 flags) = (void *) 91;

/* bpf_rc_pointer_rel (92): This helper is used in programs implementing IR decoding, to report a successfully decoded pointer movement. */
static long (* const bpf_rc_pointer_rel)(void *ctx, __s32 rel_x, __s32 rel_y) = (void *) 92;

/* bpf_spin_lock (93): Acquire a spinlock represented by the pointer lock, which is stored as part of a value of a map. */
static long (* const bpf_spin_lock)(struct bpf_spin_lock *lock) = (void *) 93;

/* bpf_spin_unlock (94): Release the lock previously locked by a call to bpf_spin_lock(lock). */
static long (* const bpf_spin_unlock)(struct bpf_spin_lock *lock) = (void *) 94;

/* bpf_sk_fullsock (95): This helper gets a struct bpf_sock pointer such that all the fields in this bpf_sock can be accessed. */
static struct bpf_sock *(* const bpf_sk_fullsock)(struct bpf_sock *sk) = (void *) 95;

/* bpf_tcp_sock (96): This helper gets a struct bpf_tcp_sock pointer from a struct bpf_sock pointer. */
static struct bpf_tcp_sock *(* const bpf_tcp_sock)(struct bpf_sock *sk) = (void *) 96;

/* bpf_skb_ecn_set_ce (97): Set ECN (Explicit Congestion Notification) field of IP header to CE (Congestion Encountered) if current value is ECT (ECN Capable Transport). */
static long (* const bpf_skb_ecn_set_ce)(struct __sk_buff *skb) = (void *) 97;

/* bpf_get_listener_sock (98): Return a struct bpf_sock pointer in TCP_LISTEN state. */
static struct bpf_sock *(* const bpf_get_listener_sock)(struct bpf_sock *sk) = (void *) 98;

/* bpf_skc_lookup_tcp (99): Look for TCP socket matching tuple, optionally in a child network namespace netns. */
static struct bpf_sock *(* const bpf_skc_lookup_tcp)(void *ctx, struct bpf_sock_tuple *tuple, __u32 tuple_size, __u64 netns, __u64 flags) = (void *) 99;

/* bpf_tcp_check_syncookie (100): Check whether iph and th contain a valid SYN cookie ACK for the listening socket in sk. */
static long (* const bpf_tcp_check_syncookie)(void *sk, void *iph, __u32 iph_len, struct tcphdr *th, __u32 th_len) = (void *) 100;

/* bpf_sysctl_get_name (101): Get name of sysctl in /proc/sys/ and copy it into provided by program buffer buf of size buf_len. */
static long (* const bpf_sysctl_get_name)(struct bpf_sysctl *ctx, char *buf, unsigned long buf_len, __u64 flags) = (void *) 101;

/* bpf_sysctl_get_current_value (102): Get current value of sysctl as it is presented in /proc/sys (incl. */
static long (* const bpf_sysctl_get_current_value)(struct bpf_sysctl *ctx, char *buf, unsigned long buf_len) = (void *) 102;

/* bpf_sysctl_get_new_value (103): Get new value being written by user space to sysctl (before the actual write happens) and copy it as a string into provided by program buffer buf of size buf... */
static long (* const bpf_sysctl_get_new_value)(struct bpf_sysctl *ctx, char *buf, unsigned long buf_len) = (void *) 103;

/* bpf_sysctl_set_new_value (104): Override new value being written by user space to sysctl with value provided by program in buffer buf of size buf_len. */
static long (* const bpf_sysctl_set_new_value)(struct bpf_sysctl *ctx, const char *buf, unsigned long buf_len) = (void *) 104;

/* bpf_strtol (105): Convert the initial part of the string from buffer buf of size buf_len to a long integer according to the given base and save the result in res. */
static long (* const bpf_strtol)(const char *buf, unsigned long buf_len, __u64 flags, long *res) = (void *) 105;

/* bpf_strtoul (106): Convert the initial part of the string from buffer buf of size buf_len to an unsigned long integer according to the given base and save the result in res. */
static long (* const bpf_strtoul)(const char *buf, unsigned long buf_len, __u64 flags, unsigned long *res) = (void *) 106;

/* bpf_sk_storage_get (107): Get a bpf-local-storage from a sk. */
static void *(* const bpf_sk_storage_get)(void *map, void *sk, void *value, __u64 flags) = (void *) 107;

/* bpf_sk_storage_delete (108): Delete a bpf-local-storage from a sk. */
static long (* const bpf_sk_storage_delete)(void *map, void *sk) = (void *) 108;

/* bpf_send_signal (109): Send signal sig to the process of the current task. */
static long (* const bpf_send_signal)(__u32 sig) = (void *) 109;

/* bpf_tcp_gen_syncookie (110): Try to issue a SYN cookie for the packet with corresponding IP/TCP headers, iph and th, on the listening socket in sk. */
static __s64 (* const bpf_tcp_gen_syncookie)(void *sk, void *iph, __u32 iph_len, struct tcphdr *th, __u32 th_len) = (void *) 110;

/* bpf_skb_output (111): Write raw data blob into a special BPF perf event held by map of type BPF_MAP_TYPE_PERF_EVENT_ARRAY. */
static long (* const bpf_skb_output)(void *ctx, void *map, __u64 flags, void *data, __u64 size) = (void *) 111;

/* bpf_probe_read_user (112): Safely attempt to read size bytes from user space address unsafe_ptr and store the data in dst. */
static long (* const bpf_probe_read_user)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 112;

/* bpf_probe_read_kernel (113): Safely attempt to read size bytes from kernel space address unsafe_ptr and store the data in dst. */
static long (* const bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 113;

/* bpf_probe_read_user_str (114): Copy a NUL terminated string from an unsafe user address unsafe_ptr to dst. */
static long (* const bpf_probe_read_user_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 114;

/* bpf_probe_read_kernel_str (115): Copy a NUL terminated string from an unsafe kernel address unsafe_ptr to dst. */
static long (* const bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *) 115;

/* bpf_tcp_send_ack (116): Send out a tcp-ack. */
static long (* const bpf_tcp_send_ack)(void *tp, __u32 rcv_nxt) = (void *) 116;

/* bpf_send_signal_thread (117): Send signal sig to the thread corresponding to the current task. */
static long (* const bpf_send_signal_thread)(__u32 sig) = (void *) 117;

/* bpf_jiffies64 (118): Obtain the 64bit jiffies */
static __u64 (* const bpf_jiffies64)(void) = (void *) 118;

/* bpf_read_branch_records (119): For an eBPF program attached to a perf event, retrieve the branch records (struct perf_branch_entry) associated to ctx and store it in the buffer pointed by... */
static long (* const bpf_read_branch_records)(struct bpf_perf_event_data *ctx, void *buf, __u32 size, __u64 flags) = (void *) 119;

/* bpf_get_ns_current_pid_tgid (120): Returns 0 on success, values for pid and tgid as seen from the current namespace will be returned in nsdata. */
static long (* const bpf_get_ns_current_pid_tgid)(__u64 dev, __u64 ino, struct bpf_pidns_info *nsdata, __u32 size) = (void *) 120;

/* bpf_xdp_output (121): Write raw data blob into a special BPF perf event held by map of type BPF_MAP_TYPE_PERF_EVENT_ARRAY. */
static long (* const bpf_xdp_output)(void *ctx, void *map, __u64 flags, void *data, __u64 size) = (void *) 121;

/* bpf_get_netns_cookie (122): Retrieve the cookie (generated by the kernel) of the network namespace the input ctx is associated with. */
static __u64 (* const bpf_get_netns_cookie)(void *ctx) = (void *) 122;

/* bpf_get_current_ancestor_cgroup_id (123): Return id of cgroup v2 that is ancestor of the cgroup associated with the current task at the ancestor_level. */
static __u64 (* const bpf_get_current_ancestor_cgroup_id)(int ancestor_level) = (void *) 123;

/* bpf_sk_assign (124): Helper is overloaded depending on BPF program type. */
static long (* const bpf_sk_assign)(void *ctx, void *sk, __u64 flags) = (void *) 124;

/* bpf_ktime_get_boot_ns (125): Return the time elapsed since system boot, in nanoseconds. */
static __u64 (* const bpf_ktime_get_boot_ns)(void) = (void *) 125;

/* bpf_seq_printf (126): bpf_seq_printf() uses seq_file seq_printf() to print out the format string. */
static long (* const bpf_seq_printf)(struct seq_file *m, const char *fmt, __u32 fmt_size, const void *data, __u32 data_len) = (void *) 126;

/* bpf_seq_write (127): bpf_seq_write() uses seq_file seq_write() to write the data. */
static long (* const bpf_seq_write)(struct seq_file *m, const void *data, __u32 len) = (void *) 127;

/* bpf_sk_cgroup_id (128): Return the cgroup v2 id of the socket sk. */
static __u64 (* const bpf_sk_cgroup_id)(void *sk) = (void *) 128;

/* bpf_sk_ancestor_cgroup_id (129): Return id of cgroup v2 that is ancestor of cgroup associated with the sk at the ancestor_level. */
static __u64 (* const bpf_sk_ancestor_cgroup_id)(void *sk, int ancestor_level) = (void *) 129;

/* bpf_ringbuf_output (130): Copy size bytes from data into a ring buffer ringbuf. */
static long (* const bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) = (void *) 130;

/* bpf_ringbuf_reserve (131): Reserve size bytes of payload in a ring buffer ringbuf. */
static void *(* const bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *) 131;

/* bpf_ringbuf_submit (132): Submit reserved ring buffer sample, pointed to by data. */
static void (* const bpf_ringbuf_submit)(void *data, __u64 flags) = (void *) 132;

/* bpf_ringbuf_discard (133): Discard reserved ring buffer sample, pointed to by data. */
static void (* const bpf_ringbuf_discard)(void *data, __u64 flags) = (void *) 133;

/* bpf_ringbuf_query (134): Query various characteristics of provided ring buffer. */
static __u64 (* const bpf_ringbuf_query)(void *ringbuf, __u64 flags) = (void *) 134;

/* bpf_csum_level (135): Change the skbs checksum level by one layer up or down, or reset it entirely to none in order to have the stack perform checksum validation. */
static long (* const bpf_csum_level)(struct __sk_buff *skb, __u64 level) = (void *) 135;

/* bpf_skc_to_tcp6_sock (136): Dynamically cast a sk pointer to a tcp6_sock pointer. */
static struct tcp6_sock *(* const bpf_skc_to_tcp6_sock)(void *sk) = (void *) 136;

/* bpf_skc_to_tcp_sock (137): Dynamically cast a sk pointer to a tcp_sock pointer. */
static struct tcp_sock *(* const bpf_skc_to_tcp_sock)(void *sk) = (void *) 137;

/* bpf_skc_to_tcp_timewait_sock (138): Dynamically cast a sk pointer to a tcp_timewait_sock pointer. */
static struct tcp_timewait_sock *(* const bpf_skc_to_tcp_timewait_sock)(void *sk) = (void *) 138;

/* bpf_skc_to_tcp_request_sock (139): Dynamically cast a sk pointer to a tcp_request_sock pointer. */
static struct tcp_request_sock *(* const bpf_skc_to_tcp_request_sock)(void *sk) = (void *) 139;

/* bpf_skc_to_udp6_sock (140): Dynamically cast a sk pointer to a udp6_sock pointer. */
static struct udp6_sock *(* const bpf_skc_to_udp6_sock)(void *sk) = (void *) 140;

/* bpf_get_task_stack (141): Return a user or a kernel stack in bpf program provided buffer. */
static long (* const bpf_get_task_stack)(struct task_struct *task, void *buf, __u32 size, __u64 flags) = (void *) 141;

/* bpf_load_hdr_opt (142): Load header option. */
static long (* const bpf_load_hdr_opt)(struct bpf_sock_ops *skops, void *searchby_res, __u32 len, __u64 flags) = (void *) 142;

/* bpf_store_hdr_opt (143): Store header option. */
static long (* const bpf_store_hdr_opt)(struct bpf_sock_ops *skops, const void *from, __u32 len, __u64 flags) = (void *) 143;

/* bpf_reserve_hdr_opt (144): Reserve len bytes for the bpf header option. */
static long (* const bpf_reserve_hdr_opt)(struct bpf_sock_ops *skops, __u32 len, __u64 flags) = (void *) 144;

/* bpf_inode_storage_get (145): Get a bpf_local_storage from an inode. */
static void *(* const bpf_inode_storage_get)(void *map, void *inode, void *value, __u64 flags) = (void *) 145;

/* bpf_inode_storage_delete (146): Delete a bpf_local_storage from an inode. */
static int (* const bpf_inode_storage_delete)(void *map, void *inode) = (void *) 146;

/* bpf_d_path (147): Return full path for given struct path object, which needs to be the kernel BTF path object. */
static long (* const bpf_d_path)(const struct path *path, char *buf, __u32 sz) = (void *) 147;

/* bpf_copy_from_user (148): Read size bytes from user space address user_ptr and store the data in dst. */
static long (* const bpf_copy_from_user)(void *dst, __u32 size, const void *user_ptr) = (void *) 148;

/* bpf_snprintf_btf (149): Use BTF to store a string representation of ptr->ptr in str, using ptr->type_id. */
static long (* const bpf_snprintf_btf)(char *str, __u32 str_size, struct btf_ptr *ptr, __u32 btf_ptr_size, __u64 flags) = (void *) 149;

/* bpf_seq_printf_btf (150): Use BTF to write to seq_write a string representation of ptr->ptr, using ptr->type_id as per bpf_snprintf_btf(). */
static long (* const bpf_seq_printf_btf)(struct seq_file *m, struct btf_ptr *ptr, __u32 ptr_size, __u64 flags) = (void *) 150;

/* bpf_skb_cgroup_classid (151): See bpf_get_cgroup_classid() for the main description. */
static __u64 (* const bpf_skb_cgroup_classid)(struct __sk_buff *skb) = (void *) 151;

/* bpf_redirect_neigh (152): Redirect the packet to another net device of index ifindex and fill in L2 addresses from neighboring subsystem. */
static long (* const bpf_redirect_neigh)(__u32 ifindex, struct bpf_redir_neigh *params, int plen, __u64 flags) = (void *) 152;

/* bpf_per_cpu_ptr (153): Take a pointer to a percpu ksym, percpu_ptr, and return a pointer to the percpu kernel variable on cpu. */
static void *(* const bpf_per_cpu_ptr)(const void *percpu_ptr, __u32 cpu) = (void *) 153;

/* bpf_this_cpu_ptr (154): Take a pointer to a percpu ksym, percpu_ptr, and return a pointer to the percpu kernel variable on this cpu. */
static void *(* const bpf_this_cpu_ptr)(const void *percpu_ptr) = (void *) 154;

/* bpf_redirect_peer (155): Redirect the packet to another net device of index ifindex. */
static long (* const bpf_redirect_peer)(__u32 ifindex, __u64 flags) = (void *) 155;

/* bpf_task_storage_get (156): Get a bpf_local_storage from the task. */
static void *(* const bpf_task_storage_get)(void *map, struct task_struct *task, void *value, __u64 flags) = (void *) 156;

/* bpf_task_storage_delete (157): Delete a bpf_local_storage from a task. */
static long (* const bpf_task_storage_delete)(void *map, struct task_struct *task) = (void *) 157;

/* bpf_get_current_task_btf (158): Return a BTF pointer to the "current" task. */
static struct task_struct *(* const bpf_get_current_task_btf)(void) = (void *) 158;

/* bpf_bprm_opts_set (159): Set or clear certain options on bprm: */
static long (* const bpf_bprm_opts_set)(struct linux_binprm *bprm, __u64 flags) = (void *) 159;

/* bpf_ktime_get_coarse_ns (160): Return a coarse-grained version of the time elapsed since system boot, in nanoseconds. */
static __u64 (* const bpf_ktime_get_coarse_ns)(void) = (void *) 160;

/* bpf_ima_inode_hash (161): Returns the stored IMA hash of the inode (if it's available). */
static long (* const bpf_ima_inode_hash)(struct inode *inode, void *dst, __u32 size) = (void *) 161;

/* bpf_sock_from_file (162): If the given file represents a socket, returns the associated socket. */
static struct socket *(* const bpf_sock_from_file)(struct file *file) = (void *) 162;

/* bpf_check_mtu (163): Check packet size against exceeding MTU of net device (based on ifindex). */
static long (* const bpf_check_mtu)(void *ctx, __u32 ifindex, __u32 *mtu_len, __s32 len_diff, __u64 flags) = (void *) 163;

/* bpf_for_each_map_elem (164): For each element in map, call callback_fn function with map, callback_ctx and other map-specific parameters. */
static long (* const bpf_for_each_map_elem)(void *map, void *callback_fn, void *callback_ctx, __u64 flags) = (void *) 164;

/* bpf_snprintf (165): Outputs a string into the str buffer of size str_size based on a format string stored in a read-only map pointed by fmt. */
static long (* const bpf_snprintf)(char *str, __u32 str_size, const char *fmt, __u64 *data, __u32 data_len) = (void *) 165;

/* bpf_sys_bpf (166): Execute bpf syscall with given arguments. */
static long (* const bpf_sys_bpf)(__u32 cmd, void *attr, __u32 attr_size) = (void *) 166;

/* bpf_btf_find_by_name_kind (167): Find BTF type with given name and kind in vmlinux BTF or in module's BTFs. */
static long (* const bpf_btf_find_by_name_kind)(char *name, int name_sz, __u32 kind, int flags) = (void *) 167;

/* bpf_sys_close (168): Execute close syscall for given FD. */
static long (* const bpf_sys_close)(__u32 fd) = (void *) 168;

/* bpf_timer_init (169): Initialize the timer. */
static long (* const bpf_timer_init)(struct bpf_timer *timer, void *map, __u64 flags) = (void *) 169;

/* bpf_timer_set_callback (170): Configure the timer to call callback_fn static function. */
static long (* const bpf_timer_set_callback)(struct bpf_timer *timer, void *callback_fn) = (void *) 170;

/* bpf_timer_start (171): Set timer expiration N nanoseconds from the current time. */
static long (* const bpf_timer_start)(struct bpf_timer *timer, __u64 nsecs, __u64 flags) = (void *) 171;

/* bpf_timer_cancel (172): Cancel the timer and wait for callback_fn to finish if it was running. */
static long (* const bpf_timer_cancel)(struct bpf_timer *timer) = (void *) 172;

/* bpf_get_func_ip (173): Get address of the traced function (for tracing and kprobe programs). */
static __u64 (* const bpf_get_func_ip)(void *ctx) = (void *) 173;

/* bpf_get_attach_cookie (174): Get bpf_cookie value provided (optionally) during the program attachment. */
static __u64 (* const bpf_get_attach_cookie)(void *ctx) = (void *) 174;

/* bpf_task_pt_regs (175): Get the struct pt_regs associated with task. */
static long (* const bpf_task_pt_regs)(struct task_struct *task) = (void *) 175;

/* bpf_get_branch_snapshot (176): Get branch trace from hardware engines like Intel LBR. */
static long (* const bpf_get_branch_snapshot)(void *entries, __u32 size, __u64 flags) = (void *) 176;

/* bpf_trace_vprintk (177): Behaves like bpf_trace_printk() helper, but takes an array of u64 to format and can handle more format args as a result. */
static long (* const bpf_trace_vprintk)(const char *fmt, __u32 fmt_size, const void *data, __u32 data_len) = (void *) 177;

/* bpf_skc_to_unix_sock (178): Dynamically cast a sk pointer to a unix_sock pointer. */
static struct unix_sock *(* const bpf_skc_to_unix_sock)(void *sk) = (void *) 178;

/* bpf_kallsyms_lookup_name (179): Get the address of a kernel symbol, returned in res. */
static long (* const bpf_kallsyms_lookup_name)(const char *name, int name_sz, int flags, __u64 *res) = (void *) 179;

/* bpf_find_vma (180): Find vma of task that contains addr, call callback_fn function with task, vma, and callback_ctx. */
static long (* const bpf_find_vma)(struct task_struct *task, __u64 addr, void *callback_fn, void *callback_ctx, __u64 flags) = (void *) 180;

/* bpf_loop (181): For nr_loops, call callback_fn function with callback_ctx as the context parameter. */
static long (* const bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) = (void *) 181;

/* bpf_strncmp (182): Do strncmp() between s1 and s2. */
static long (* const bpf_strncmp)(const char *s1, __u32 s1_sz, const char *s2) = (void *) 182;

/* bpf_get_func_arg (183): Get n-th argument register (zero based) of the traced function (for tracing programs) returned in value. */
static long (* const bpf_get_func_arg)(void *ctx, __u32 n, __u64 *value) = (void *) 183;

/* bpf_get_func_ret (184): Get return value of the traced function (for tracing programs) in value. */
static long (* const bpf_get_func_ret)(void *ctx, __u64 *value) = (void *) 184;

/* bpf_get_func_arg_cnt (185): Get number of registers of the traced function (for tracing programs) where function arguments are stored in these registers. */
static long (* const bpf_get_func_arg_cnt)(void *ctx) = (void *) 185;

/* bpf_get_retval (186): Get the BPF program's return value that will be returned to the upper layers. */
static int (* const bpf_get_retval)(void) = (void *) 186;

/* bpf_set_retval (187): Set the BPF program's return value that will be returned to the upper layers. */
static int (* const bpf_set_retval)(int retval) = (void *) 187;

/* bpf_xdp_get_buff_len (188): Get the total size of a given xdp buff (linear and paged area) */
static __u64 (* const bpf_xdp_get_buff_len)(struct xdp_md *xdp_md) = (void *) 188;

/* bpf_xdp_load_bytes (189): This helper is provided as an easy way to load data from a xdp buffer. */
static long (* const bpf_xdp_load_bytes)(struct xdp_md *xdp_md, __u32 offset, void *buf, __u32 len) = (void *) 189;

/* bpf_xdp_store_bytes (190): Store len bytes from buffer buf into the frame associated to xdp_md, at offset. */
static long (* const bpf_xdp_store_bytes)(struct xdp_md *xdp_md, __u32 offset, void *buf, __u32 len) = (void *) 190;

/* bpf_copy_from_user_task (191): Read size bytes from user space address user_ptr in tsk's address space, and stores the data in dst. */
static long (* const bpf_copy_from_user_task)(void *dst, __u32 size, const void *user_ptr, struct task_struct *tsk, __u64 flags) = (void *) 191;

/* bpf_skb_set_tstamp (192): Change the __sk_buff->tstamp_type to tstamp_type and set tstamp to the __sk_buff->tstamp together. */
static long (* const bpf_skb_set_tstamp)(struct __sk_buff *skb, __u64 tstamp, __u32 tstamp_type) = (void *) 192;

/* bpf_ima_file_hash (193): Returns a calculated IMA hash of the file. */
static long (* const bpf_ima_file_hash)(struct file *file, void *dst, __u32 size) = (void *) 193;

/* bpf_kptr_xchg (194): Exchange kptr at pointer dst with ptr, and return the old value. */
static void *(* const bpf_kptr_xchg)(void *dst, void *ptr) = (void *) 194;

/* bpf_map_lookup_percpu_elem (195): Perform a lookup in percpu map for an entry associated to key on cpu. */
static void *(* const bpf_map_lookup_percpu_elem)(void *map, const void *key, __u32 cpu) = (void *) 195;

/* bpf_skc_to_mptcp_sock (196): Dynamically cast a sk pointer to a mptcp_sock pointer. */
static struct mptcp_sock *(* const bpf_skc_to_mptcp_sock)(void *sk) = (void *) 196;

/* bpf_dynptr_from_mem (197): Get a dynptr to local memory data. */
static long (* const bpf_dynptr_from_mem)(void *data, __u64 size, __u64 flags, struct bpf_dynptr *ptr) = (void *) 197;

/* bpf_ringbuf_reserve_dynptr (198): Reserve size bytes of payload in a ring buffer ringbuf through the dynptr interface. */
static long (* const bpf_ringbuf_reserve_dynptr)(void *ringbuf, __u32 size, __u64 flags, struct bpf_dynptr *ptr) = (void *) 198;

/* bpf_ringbuf_submit_dynptr (199): Submit reserved ring buffer sample, pointed to by data, through the dynptr interface. */
static void (* const bpf_ringbuf_submit_dynptr)(struct bpf_dynptr *ptr, __u64 flags) = (void *) 199;

/* bpf_ringbuf_discard_dynptr (200): Discard reserved ring buffer sample through the dynptr interface. */
static void (* const bpf_ringbuf_discard_dynptr)(struct bpf_dynptr *ptr, __u64 flags) = (void *) 200;

/* bpf_dynptr_read (201): Read len bytes from src into dst, starting from offset into src. */
static long (* const bpf_dynptr_read)(void *dst, __u64 len, const struct bpf_dynptr *src, __u64 offset, __u64 flags) = (void *) 201;

/* bpf_dynptr_write (202): Write len bytes from src into dst, starting from offset into dst. */
static long (* const bpf_dynptr_write)(const struct bpf_dynptr *dst, __u64 offset, void *src, __u64 len, __u64 flags) = (void *) 202;

/* bpf_dynptr_data (203): Get a pointer to the underlying dynptr data. */
static void *(* const bpf_dynptr_data)(const struct bpf_dynptr *ptr, __u64 offset, __u64 len) = (void *) 203;

/* bpf_tcp_raw_gen_syncookie_ipv4 (204): Try to issue a SYN cookie for the packet with corresponding IPv4/TCP headers, iph and th, without depending on a listening socket. */
static __s64 (* const bpf_tcp_raw_gen_syncookie_ipv4)(struct iphdr *iph, struct tcphdr *th, __u32 th_len) = (void *) 204;

/* bpf_tcp_raw_gen_syncookie_ipv6 (205): Try to issue a SYN cookie for the packet with corresponding IPv6/TCP headers, iph and th, without depending on a listening socket. */
static __s64 (* const bpf_tcp_raw_gen_syncookie_ipv6)(struct ipv6hdr *iph, struct tcphdr *th, __u32 th_len) = (void *) 205;

/* bpf_tcp_raw_check_syncookie_ipv4 (206): Check whether iph and th contain a valid SYN cookie ACK without depending on a listening socket. */
static long (* const bpf_tcp_raw_check_syncookie_ipv4)(struct iphdr *iph, struct tcphdr *th) = (void *) 206;

/* bpf_tcp_raw_check_syncookie_ipv6 (207): Check whether iph and th contain a valid SYN cookie ACK without depending on a listening socket. */
static long (* const bpf_tcp_raw_check_syncookie_ipv6)(struct ipv6hdr *iph, struct tcphdr *th) = (void *) 207;

/* bpf_ktime_get_tai_ns (208): A nonsettable system-wide clock derived from wall-clock time but ignoring leap seconds. */
static __u64 (* const bpf_ktime_get_tai_ns)(void) = (void *) 208;

/* bpf_user_ringbuf_drain (209): Drain samples from the specified user ring buffer, and invoke the provided callback for each such sample: */
static long (* const bpf_user_ringbuf_drain)(void *map, void *callback_fn, void *ctx, __u64 flags) = (void *) 209;

/* bpf_cgrp_storage_get (210): Get a bpf_local_storage from the cgroup. */
static void *(* const bpf_cgrp_storage_get)(void *map, struct cgroup *cgroup, void *value, __u64 flags) = (void *) 210;

/* bpf_cgrp_storage_delete (211): Delete a bpf_local_storage from a cgroup. */
static long (* const bpf_cgrp_storage_delete)(void *map, struct cgroup *cgroup) = (void *) 211;

#endif /* __NFPIPE_BPF_HELPER_DEFS_H */
