// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The maps of layout 3 whose state an upgrading agent carries over (conntrack, counters), as an agent of
 * that layout pinned them: the migration test loads this object to stand in for a node set up before
 * the upgrade. Same names, types, sizes and capacities as layout 3's bpf/include/sluice_maps.h.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "sluice_shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_MAX_CONNTRACK);
	__type(key, struct sl_v3_ct_key);
	__type(value, struct sl_ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_ct_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SL_MAX_COUNTERS);
	__type(key, struct sl_v3_counter_key);
	__type(value, struct sl_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_cnt_v3 SEC(".maps");

/* Keeps both maps referenced by a program, as the layout 3 datapath did. */
SEC("tc")
int layout3_touch(struct __sk_buff *skb)
{
	struct sl_v3_ct_key k = {};
	struct sl_v3_counter_key c = {};

	if (bpf_map_lookup_elem(&sl_ct_v3, &k) || bpf_map_lookup_elem(&sl_cnt_v3, &c))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}
