// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The benchmark floor: a tc program that passes every packet and touches nothing. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int sl_trivial(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
