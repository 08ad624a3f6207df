// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test object for the addon's kernel tests: one map of each kind the datapath uses and two tc programs. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct lpm_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct event {
	__u32 len;
	__u32 mark;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} t_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key);
	__type(value, __u32);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} t_lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 4);
} t_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} t_events SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&t_percpu, &slot);
	if (c)
		*c += 1;
}

/* Verdict from t_hash keyed by packet length (TC_ACT_OK when absent); emits one event per packet. */
SEC("tc")
int t_prog(struct __sk_buff *skb)
{
	__u32 len = skb->len;
	__u64 *v = bpf_map_lookup_elem(&t_hash, &len);
	struct event *e;

	count(0);
	e = bpf_ringbuf_reserve(&t_events, sizeof(*e), 0);
	if (e) {
		e->len = len;
		e->mark = skb->mark;
		bpf_ringbuf_submit(e, 0);
	}
	return v ? (int)*v : TC_ACT_OK;
}

/* The replacement program for link updates: always TC_ACT_SHOT, counted in slot 1. */
SEC("tc")
int t_prog2(struct __sk_buff *skb)
{
	count(1);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
