// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The node-wide verdict counters as a build with 9 reasons pinned them (as layout 4 did before
 * SL_REASON_SOURCE_SPOOFED), under this layout's name: 36 slots. A build with more reasons must still load over such a pin
 * (datapath/kernel/maps.ts unpinResizedMaps); the source check's kernel test stands a node on it.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "sluice_shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * 2 * 9);
	__type(key, __u32);
	__type(value, struct sl_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_vcnt_v5 SEC(".maps");

/* Keeps the map referenced by a program, as the datapath does. */
SEC("tc")
int vcnt9_touch(struct __sk_buff *skb)
{
	__u32 k = 0;
	struct sl_counter_value *v = bpf_map_lookup_elem(&sl_vcnt_v5, &k);

	if (v)
		v->packets += 1;
	return TC_ACT_OK;
}
