// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Deliberately rejected by the verifier (map value used without a NULL check): the addon must
 * surface the verifier log in the error. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} bad_map SEC(".maps");

SEC("tc")
int bad_prog(struct __sk_buff *skb)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&bad_map, &k);
	return (int)*v;
}

char LICENSE[] SEC("license") = "GPL";
