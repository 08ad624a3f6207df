// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The maps of layout 4 whose state an upgrading agent carries over (conntrack, counters, the endpoint
 * values that name each endpoint's counter slot), as an agent of that layout pinned them: the migration
 * test loads this object to stand in for a node set up before the upgrade. Same names, types, sizes and
 * capacities as layout 4's bpf/include/sluice_maps.h (its conntrack keys and values are this layout's).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "sluice_shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_MAX_CONNTRACK);
	__type(key, struct sl_ct4_key);
	__type(value, struct sl_ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ct4_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_MAX_CONNTRACK);
	__type(key, struct sl_ct6_key);
	__type(value, struct sl_ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ct6_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_MAX_ENDPOINTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_endpoint_key);
	__type(value, struct sl_v4_endpoint_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ep_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_MAX_COUNTERS);
	__type(key, __u32);
	__type(value, struct sl_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_cnt_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_VERDICT_COUNTERS);
	__type(key, __u32);
	__type(value, struct sl_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_vcnt_v4 SEC(".maps");

/* Keeps the maps referenced by a program, as the layout 4 datapath did. */
SEC("tc")
int layout4_touch(struct __sk_buff *skb)
{
	struct sl_ct4_key k4 = {};
	struct sl_ct6_key k6 = {};
	struct sl_endpoint_key ek = {};
	__u32 z = 0;

	if (bpf_map_lookup_elem(&sl_ct4_v4, &k4) || bpf_map_lookup_elem(&sl_ct6_v4, &k6) ||
	    bpf_map_lookup_elem(&sl_ep_v4, &ek) || bpf_map_lookup_elem(&sl_cnt_v4, &z) ||
	    bpf_map_lookup_elem(&sl_vcnt_v4, &z))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}
