/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The datapath's maps. All are pinned by name under the loader's bpffs root, so a restarted agent
 * or a replaced program finds the same state. libbpf's pin reuse checks sizes and flags but not
 * the value layout, so every name carries the layout version: bump SL_LAYOUT_VERSION and rename.
 */
#ifndef SLUICE_MAPS_H
#define SLUICE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "sluice_shared.h"

_Static_assert(SL_LAYOUT_VERSION == 5, "map names carry the layout version: rename the _v5 maps");

/*
 * ipcache: IP prefix -> security identity. Full-length prefixes (hosts: pods, nodes) are in a hash per
 * family, probed first: a /32 or /128 is the longest prefix there is, so a hit there is the LPM answer.
 * Other prefixes are in the LPM trie. A miss in both means world.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_MAX_IPCACHE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_ip4_key);
	__type(value, struct sl_ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ip4h_v5 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_MAX_IPCACHE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_ip6_key);
	__type(value, struct sl_ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ip6h_v5 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SL_MAX_IPCACHE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_ipcache_key);
	__type(value, struct sl_ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ipc_v5 SEC(".maps");

/*
 * endpoints: host-side ifindex -> local endpoint. Not preallocated on purpose: an update then
 * swaps in a new element and frees the old one only after an RCU grace period, so a packet that
 * copied the old value never sees it half-overwritten (the atomic policy flip relies on it).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_MAX_ENDPOINTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_endpoint_key);
	__type(value, struct sl_endpoint_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ep_v5 SEC(".maps");

/*
 * source addresses: (ep, family, address) of every local pod's own addresses. sl_from_pod drops what a
 * pod with SL_EP_SOURCE_CHECK sends from any other, so no pod can borrow another's address and with it
 * its identity in the peer's ipcache. A new map under a new pin name, like sl_vcnt: no layout change.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_MAX_SOURCES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_source_key);
	__type(value, struct sl_source_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_src_v5 SEC(".maps");

/* policy groups: (ep, identity, gen, dir) -> inline entries and where the rest are. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_MAX_POLICY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_policy_set_key);
	__type(value, struct sl_policy_set);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_pset_v5 SEC(".maps");

/* full-port entries of big groups: (ep, identity, gen, dir, proto, port) -> verdict. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_MAX_POLICY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_policy_exact_key);
	__type(value, struct sl_policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_pexact_v5 SEC(".maps");

/* other entries of the biggest groups: (ep, identity, gen, dir, proto, port block) -> verdict, longest prefix wins. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SL_MAX_POLICY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_policy_key);
	__type(value, struct sl_policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_pol_v5 SEC(".maps");

/* conntrack: flows as sent by their initiator, per endpoint and direction; IPv4 and IPv6 apart. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_MAX_CONNTRACK);
	__type(key, struct sl_ct4_key);
	__type(value, struct sl_ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ct4_v5 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_MAX_CONNTRACK);
	__type(key, struct sl_ct6_key);
	__type(value, struct sl_ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ct6_v5 SEC(".maps");

/* fragments: verdict of each datagram's first fragment, for the fragments that follow it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_MAX_FRAGMENTS);
	__type(key, struct sl_frag_key);
	__type(value, struct sl_frag_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_frag_v5 SEC(".maps");

/* counters: packets and bytes per (endpoint slot, direction, verdict), per CPU (enum sl_counters). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_MAX_COUNTERS);
	__type(key, __u32);
	__type(value, struct sl_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_cnt_v5 SEC(".maps");

/*
 * verdict counters: packets and bytes per (direction, verdict, reason) over the whole node, per CPU
 * (enum sl_verdict_counters), for the agent's metrics. A new map under a new pin name: programs built
 * before it neither use nor miss it, so adding it changes no existing layout (no version bump).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_VERDICT_COUNTERS);
	__type(key, __u32);
	__type(value, struct sl_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_vcnt_v5 SEC(".maps");

/*
 * rule counters: packets, bytes and flows per (endpoint, rule, audit) slot, per CPU. The map writer
 * hands out the slots (operator/src/datapath/writer/rule-slots.ts) and writes them into policy values.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_MAX_RULE_COUNTERS);
	__type(key, __u32);
	__type(value, struct sl_rule_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_rcnt_v5 SEC(".maps");

/* events: sampled struct sl_flow_event records. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SL_EVENTS_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_evt_v5 SEC(".maps");

/* config: one struct sl_config written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_cfg_v5 SEC(".maps");

/* event rate limiter: one window per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_ratelimit);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_rl_v5 SEC(".maps");

#endif /* SLUICE_MAPS_H */
