// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Sluice's enforcement programs, one per direction of a pod's host-side interface:
 *   sl_from_pod  host-side ingress hook = the pod's EGRESS  (peer = destination address)
 *   sl_to_pod    host-side egress hook  = the pod's INGRESS (peer = source address)
 * Both run sl_decide(). Its policy lookup must give what operator/src/policy/lookup.ts
 * simulates; the differential test holds them together.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_packet.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "sluice_shared.h"
#include "sluice_maps.h"
#include "parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SL_NSEC_PER_SEC 1000000000ULL

/*
 * The outcome of one packet, carried to accounting. slot and audit_slot: the rule counters the packet
 * adds to (0: none); flow: whether it was a policy decision, which counts a flow too.
 */
struct sl_decision {
	__u32 peer_identity;
	__u32 rule_id;
	__u32 audit_rule_id;
	__u16 slot;
	__u16 audit_slot;
	__u8 verdict;
	__u8 reason;
	__u8 peer_known;
	__u8 audit_verdict; /* SL_VERDICT_NONE unless the Audit policies would decide otherwise */
	__u8 flow;
	__u8 pad[3];
};

/* The peer's identity: its host entry, else the longest prefix holding it, else world. */
static __always_inline __u32 sl_peer_identity(const struct sl_pkt *p, __u8 dir, __u8 family)
{
	const __u8 *addr = dir == SL_DIR_EGRESS ? p->t.daddr : p->t.saddr;
	struct sl_ipcache_value *v;

	if (family == SL_FAMILY_V4) {
		struct sl_ip4_key hk;
		__builtin_memcpy(hk.addr, addr, 4);
		v = bpf_map_lookup_elem(&sl_ip4h_v5, &hk);
	} else {
		struct sl_ip6_key hk;
		__builtin_memcpy(hk.addr, addr, 16);
		v = bpf_map_lookup_elem(&sl_ip6h_v5, &hk);
	}
	if (v)
		return v->identity;
	/* Built only on a host miss: pods and nodes, the common peers, never need it. */
	struct sl_ipcache_key k = {.family = family};
	if (family == SL_FAMILY_V4) {
		k.prefixlen = 32 + 32;
		__builtin_memcpy(k.addr, addr, 4);
	} else {
		k.prefixlen = 32 + 128;
		__builtin_memcpy(k.addr, addr, 16);
	}
	v = bpf_map_lookup_elem(&sl_ipc_v5, &k);
	return v ? v->identity : SL_ID_WORLD;
}

/*
 * The longest-prefix match among one identity's entries (the group s of ep_id, identity, gen, dir): the
 * exact hash and/or the LPM trie only for groups too big to inline. Fills out and returns 1 when an entry
 * matched. A global function: the verifier checks it once, not once per path that reaches it.
 * what = gen << 32 | dir << 24 | proto << 16 | the policy port as it lies in the packet (one argument:
 * a BPF function takes five).
 */
__noinline int sl_policy_group(const struct sl_policy_set *s, __u32 ep_id, __u32 identity, __u64 what,
			       struct sl_policy_value *out)
{
	__u8 gen = what >> 32;
	__u8 dir = what >> 24;
	__u8 proto = what >> 16;
	__u16 pport = what;
	struct sl_policy_value *v;

	if (!s || !out)
		return 0;
	if (s->flags & SL_PSET_EXACT) {
		__u16 hport = bpf_ntohs(pport);
		__u64 bit = 1ULL << ((hport ^ hport >> 6 ^ hport >> 12 ^ proto) & 63);
		if (s->exact_filter & bit) {
			struct sl_policy_exact_key ek = {
				.ep_id = ep_id,
				.identity = identity,
				.gen = gen,
				.dir = dir,
				.proto = proto,
			};
			__builtin_memcpy(ek.port, &pport, 2);
			v = bpf_map_lookup_elem(&sl_pexact_v5, &ek);
			if (v) {
				*out = *v;
				return 1;
			}
		}
	}
	/* Most specific first: the first match is the longest prefix. */
	__u32 key = (__u32)proto << 16 | pport;
	__u32 n = s->count;
	for (__u32 i = 0; i < SL_POLICY_INLINE; i++) {
		if (i >= n)
			break;
		if ((key & s->rules[i].mask) == s->rules[i].match) {
			*out = s->results[i];
			return 1;
		}
	}
	if (s->flags & SL_PSET_LPM) {
		struct sl_policy_key k = {
			.prefixlen = SL_POLICY_PREFIX_FULL,
			.ep_id = bpf_htonl(ep_id),
			.identity = bpf_htonl(identity),
			.gen = gen,
			.dir = dir,
			.proto = proto,
		};
		__builtin_memcpy(k.port, &pport, 2);
		v = bpf_map_lookup_elem(&sl_pol_v5, &k);
		if (v) {
			*out = *v;
			return 1;
		}
	}
	return 0;
}

/*
 * The peer identity's group, then the wildcard (SL_ID_ANY) group, which the endpoint value carries; the
 * first match decides (deny, tiers and precedence were folded in at compile time). Neither: the
 * endpoint default.
 */
static __always_inline void sl_policy(const struct sl_endpoint_value *ep, __u8 dir, const struct sl_pkt *p,
				      __u8 family, struct sl_decision *d)
{
	struct sl_policy_value v = {};

	if (!d->peer_known) {
		d->peer_identity = sl_peer_identity(p, dir, family);
		d->peer_known = 1;
	}
	__u64 what = (__u64)ep->gen << 32 | (__u32)dir << 24 | (__u32)p->t.proto << 16 | p->policy_port;
	struct sl_policy_set_key sk = {.ep_id = ep->ep_id, .identity = d->peer_identity, .gen = ep->gen, .dir = dir};
	const struct sl_policy_set *peer = bpf_map_lookup_elem(&sl_pset_v5, &sk);
	const struct sl_policy_set *any = dir == SL_DIR_INGRESS ? &ep->any[SL_DIR_INGRESS] : &ep->any[SL_DIR_EGRESS];
	if (sl_policy_group(peer, ep->ep_id, d->peer_identity, what, &v) ||
	    sl_policy_group(any, ep->ep_id, SL_ID_ANY, what, &v)) {
		/* Anything but an explicit allow fails closed. */
		d->verdict = v.verdict == SL_VERDICT_ALLOW ? SL_VERDICT_ALLOW : SL_VERDICT_DENY;
		d->reason = SL_REASON_POLICY;
		d->rule_id = v.rule_id;
		d->flow = 1;
#ifndef SL_NO_RULE_COUNTERS
		d->slot = v.slot;
		if (v.audit_verdict != SL_VERDICT_NONE) {
			__u8 av = v.audit_verdict == SL_VERDICT_ALLOW ? SL_VERDICT_ALLOW : SL_VERDICT_DENY;
			if (av != d->verdict) {
				d->audit_verdict = av;
				d->audit_rule_id = v.audit_rule_id;
				d->audit_slot = v.audit_slot;
			}
		}
#endif
		return;
	}
	__u8 deny_flag = dir == SL_DIR_INGRESS ? SL_EP_DEFAULT_DENY_INGRESS : SL_EP_DEFAULT_DENY_EGRESS;
	d->verdict = (ep->flags & deny_flag) ? SL_VERDICT_DENY : SL_VERDICT_ALLOW;
	d->reason = SL_REASON_DEFAULT;
	d->rule_id = 0;
	d->flow = 1;
#ifndef SL_NO_RULE_COUNTERS
	/* The Audit policies' default: reported where it differs (an Audit policy isolating the pod, say). */
	__u8 audit_flag = dir == SL_DIR_INGRESS ? SL_EP_AUDIT_DENY_INGRESS : SL_EP_AUDIT_DENY_EGRESS;
	__u8 av = (ep->flags & audit_flag) ? SL_VERDICT_DENY : SL_VERDICT_ALLOW;
	if (av != d->verdict) {
		d->audit_verdict = av;
		d->audit_rule_id = 0;
		d->audit_slot = dir == SL_DIR_INGRESS ? ep->audit_slot[SL_DIR_INGRESS] : ep->audit_slot[SL_DIR_EGRESS];
	}
#endif
}

/*
 * Orders the two ends of a tuple: < 0 when (saddr, sport) comes first, > 0 when (daddr, dport) does,
 * 0 when both ends are equal. Any total order will do; the addresses are compared as two native
 * 64-bit words (an IPv4 tuple has zeros after its 4 bytes, set by the parser).
 */
static __always_inline int sl_tuple_order(const struct sl_tuple *t)
{
	__u64 s0, s1, d0, d1;

	__builtin_memcpy(&s0, t->saddr, 8);
	__builtin_memcpy(&d0, t->daddr, 8);
	if (s0 != d0)
		return s0 < d0 ? -1 : 1;
	__builtin_memcpy(&s1, t->saddr + 8, 8);
	__builtin_memcpy(&d1, t->daddr + 8, 8);
	if (s1 != d1)
		return s1 < d1 ? -1 : 1;
	if (t->sport != t->dport)
		return t->sport < t->dport ? -1 : 1;
	return 0;
}

/* A conntrack key of either family; which one is used is known where it is. */
union sl_ct_key {
	struct sl_ct4_key v4;
	struct sl_ct6_key v6;
};

/*
 * The one conntrack key of a packet travelling in dir with tuple t, shared with its reply (the other
 * direction, reversed tuple): the member of that pair whose tuple has the lower end as its source.
 */
static __always_inline void sl_ct_key(union sl_ct_key *k, __u8 family, __u32 ep_id, __u8 dir,
				      const struct sl_tuple *t)
{
	int order = sl_tuple_order(t);
	const __u8 *sa = t->saddr;
	const __u8 *da = t->daddr;
	__u16 sport = t->sport;
	__u16 dport = t->dport;

	if (order > 0) {
		dir ^= 1;
		sa = t->daddr;
		da = t->saddr;
		sport = t->dport;
		dport = t->sport;
	} else if (order == 0) {
		dir = SL_DIR_INGRESS;
	}
	/* The fields before the addresses lie alike in both keys (asserted in sluice_shared.h). */
	struct sl_ct4_key *head = &k->v4;
	head->ep_id = ep_id;
	head->dir = dir;
	head->proto = t->proto;
	head->sport = sport;
	head->dport = dport;
	head->pad[0] = 0;
	head->pad[1] = 0;
	if (family == SL_FAMILY_V4) {
		__builtin_memcpy(k->v4.saddr, sa, 4);
		__builtin_memcpy(k->v4.daddr, da, 4);
	} else {
		__builtin_memcpy(k->v6.saddr, sa, 16);
		__builtin_memcpy(k->v6.daddr, da, 16);
	}
}

/* The conntrack map of a family (a constant where family is one). */
static __always_inline void *sl_ct_map(__u8 family)
{
	return family == SL_FAMILY_V4 ? (void *)&sl_ct4_v5 : (void *)&sl_ct6_v5;
}

static __always_inline void sl_frag_key(struct sl_frag_key *k, __u32 ep_id, __u8 dir, const struct sl_pkt *p)
{
	k->ep_id = ep_id;
	k->id = p->frag_id;
	k->dir = dir;
	/* IPv6 reassembles by (src, dst, id) alone, and its first fragment may hide more headers. */
	k->proto = p->family == SL_FAMILY_V4 ? p->t.proto : 0;
	k->family = p->family;
	k->pad = 0;
	__builtin_memcpy(k->saddr, p->t.saddr, 16);
	__builtin_memcpy(k->daddr, p->t.daddr, 16);
}

/*
 * The endpoint's counter and the node's verdict counter: per-CPU values, so plain adds (no other writer).
 * SL_NO_VERDICT_COUNTERS compiles the node-wide one out, for the benchmark that prices it.
 */
static __always_inline void sl_count(__u16 slot, __u8 dir, __u8 verdict, __u8 reason, __u64 len)
{
	__u32 denied = verdict != SL_VERDICT_ALLOW;
	__u32 k = (__u32)slot * SL_COUNTERS_PER_ENDPOINT + dir * 2 + denied;
	struct sl_counter_value *v = bpf_map_lookup_elem(&sl_cnt_v5, &k);

	if (v) {
		v->packets += 1;
		v->bytes += len;
	}
#ifndef SL_NO_VERDICT_COUNTERS
	__u32 vk = (dir * 2 + denied) * SL_VERDICT_REASONS + reason;
	v = bpf_map_lookup_elem(&sl_vcnt_v5, &vk);
	if (v) {
		v->packets += 1;
		v->bytes += len;
	}
#endif
}

/*
 * A rule counter (sl_rcnt): the packet, and a flow when it was a policy decision. Slot 0 is no rule's.
 * SL_NO_RULE_COUNTERS compiles rule counters and audit out, for the benchmark that prices them.
 */
static __always_inline void sl_count_rule(__u16 slot, __u8 flow, __u64 len)
{
#ifndef SL_NO_RULE_COUNTERS
	if (!slot)
		return;
	__u32 k = slot;
	struct sl_rule_counter *c = bpf_map_lookup_elem(&sl_rcnt_v5, &k);
	if (c) {
		c->packets += 1;
		c->bytes += len;
		c->flows += flow;
	}
#endif
}

/* The rule counters of a tracked flow's packet: those of the decision that allowed the flow. */
static __always_inline void sl_ct_counted(const struct sl_ct_value *ct, struct sl_decision *d)
{
#ifndef SL_NO_RULE_COUNTERS
	d->slot = ct->slot;
	if (ct->flags & SL_CT_AUDIT)
		d->audit_slot = ct->audit_slot;
#endif
}

/*
 * Sampled (1 of N per verdict; a packet whose fate the Audit policies would change is sampled as a
 * denied one), then rate-limited per CPU per second; never waits.
 */
static __always_inline void sl_event(struct __sk_buff *skb, const struct sl_endpoint_value *ep, __u8 dir,
				     const struct sl_pkt *p, struct sl_decision *d)
{
	__u32 zero = 0;
	struct sl_config *cfg = bpf_map_lookup_elem(&sl_cfg_v5, &zero);
	if (!cfg)
		return;
	__u32 n = d->verdict == SL_VERDICT_ALLOW && d->audit_verdict == SL_VERDICT_NONE ? cfg->event_sample_allow
										       : cfg->event_sample_deny;
	if (n == 0)
		return;
	if (n > 1 && bpf_get_prandom_u32() % n != 0)
		return;

	__u64 now = bpf_ktime_get_ns();
	struct sl_ratelimit *rl = bpf_map_lookup_elem(&sl_rl_v5, &zero);
	if (!rl)
		return;
	if (now - rl->window_start_ns >= SL_NSEC_PER_SEC) {
		rl->window_start_ns = now;
		rl->emitted = 0;
		rl->seen = 0;
	}
	rl->seen += 1;
	if (cfg->events_per_sec != 0 && rl->emitted >= cfg->events_per_sec)
		return;

	struct sl_flow_event *e = bpf_ringbuf_reserve(&sl_evt_v5, sizeof(*e), 0);
	if (!e)
		return; /* ring full: the reader is behind, drop the event, never the packet */
	rl->emitted += 1;

	if (!d->peer_known && p->family != 0) {
		d->peer_identity = sl_peer_identity(p, dir, p->family);
		d->peer_known = 1;
	}
	e->ts_ns = now;
	e->ep_id = ep->ep_id;
	e->ep_identity = ep->identity;
	e->peer_identity = d->peer_known ? d->peer_identity : 0;
	e->rule_id = d->rule_id;
	e->dir = dir;
	e->verdict = d->verdict;
	e->reason = d->reason;
	e->family = p->family;
	e->proto = p->t.proto;
	e->audit_verdict = d->audit_verdict;
	e->audit_rule_id = d->audit_rule_id;
	e->sport = p->t.sport;
	e->dport = p->t.proto == IPPROTO_ICMP || p->t.proto == SL_PROTO_ICMPV6 ? p->policy_port : p->t.dport;
	e->len = skb->len > 0xffff ? 0xffff : skb->len;
	__builtin_memcpy(e->saddr, p->t.saddr, 16);
	__builtin_memcpy(e->daddr, p->t.daddr, 16);
	bpf_ringbuf_submit(e, 0);
}

/*
 * Conntrack's clock is the coarse one (jiffy resolution, several times cheaper than bpf_ktime_get_ns
 * per packet), and an unchanged time is not rewritten: the entry's cache line stays clean.
 */
static __always_inline void sl_ct_touch(struct sl_ct_value *ct)
{
	__u64 now = bpf_ktime_get_coarse_ns();

	if (ct->last_seen_ns != now)
		ct->last_seen_ns = now;
}

/* Whether sl_src holds addr (4 or 16 bytes by family) as one of endpoint ep_id's own addresses. */
static __always_inline int sl_own_address(__u32 ep_id, __u8 family, const __u8 *addr)
{
	struct sl_source_key k = {.ep_id = ep_id, .family = family};

	if (family == SL_FAMILY_V4)
		__builtin_memcpy(k.addr, addr, 4);
	else
		__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&sl_src_v5, &k) != 0;
}

/* fe80::/10: scoped to the link, in no ipcache, and what NDP itself runs on. */
static __always_inline int sl_link_local6(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

static __always_inline int sl_unspecified6(const __u8 *a)
{
	__u64 w0, w1;

	__builtin_memcpy(&w0, a, 8);
	__builtin_memcpy(&w1, a + 8, 8);
	return (w0 | w1) == 0;
}

/* ICMPv6 Neighbor Advertisement: its target address is what the receivers' neighbor caches learn. */
#define SL_ICMPV6_NA 136

/*
 * Source verification of a parsed IP packet the pod sends (SL_EP_SOURCE_CHECK), in two parts. Its source
 * must be one of the pod's own addresses, or, in IPv6, link-local (NDP, and any link-scoped traffic:
 * such an address maps to no identity) or the unspecified address of neighbor discovery and MLD
 * (duplicate address detection sends from it); a Neighbor Advertisement must also advertise one of the
 * pod's addresses or a link-local one.
 *
 * sl_source_precheck runs before conntrack and costs an ordinary packet two compares: it settles the
 * unspecified source, and checks neighbor discovery whole (never tracked). The address lookup
 * (sl_source_addr_ok) runs only where conntrack does not decide (a new flow, a revalidation, a later
 * fragment without its first): conntrack keys hold the endpoint's id and the packet's own addresses, and
 * an entry of this endpoint was made by a packet that passed the lookup or was addressed to this pod, so
 * a packet from a borrowed address matches none. An address the pod loses bumps its policy revision
 * (the map writer), so a flow tracked from it revalidates, and fails.
 */
static __always_inline int sl_source_addr_ok(const struct sl_endpoint_value *ep, const struct sl_pkt *p,
					     __u8 family)
{
	if (family == SL_FAMILY_V4)
		return sl_own_address(ep->ep_id, SL_FAMILY_V4, p->t.saddr);
	/* The unspecified source was held to neighbor discovery and MLD by the precheck. */
	return sl_unspecified6(p->t.saddr) || sl_link_local6(p->t.saddr) ||
	       sl_own_address(ep->ep_id, SL_FAMILY_V6, p->t.saddr);
}

static __always_inline int sl_source_precheck(struct __sk_buff *skb, const struct sl_endpoint_value *ep,
					      const struct sl_pkt *p)
{
	if (p->family == SL_FAMILY_V4)
		return 1;
	if (sl_unspecified6(p->t.saddr)) {
		/* Only where RFC 4861 and 3810 allow it: neighbor discovery and MLD (130-137, 143). */
		__u8 type = bpf_ntohs(p->policy_port) >> 8;
		if (p->t.proto != SL_PROTO_ICMPV6 || p->frag == SL_FRAG_LATER ||
		    !((type >= 130 && type <= 137) || type == 143))
			return 0;
	}
	if (p->icmp != SL_ICMP_NDP)
		return 1;
	if (!sl_source_addr_ok(ep, p, SL_FAMILY_V6))
		return 0;
	if (bpf_ntohs(p->policy_port) >> 8 == SL_ICMPV6_NA) {
		__u8 target[16];
		if (sl_load(skb, p->l4off + 8, target, sizeof(target)))
			return 0;
		return sl_link_local6(target) || sl_own_address(ep->ep_id, SL_FAMILY_V6, target);
	}
	return 1;
}

/*
 * A frame that is not IP, sent by a pod with SL_EP_SOURCE_CHECK: an ARP packet for IPv4 must announce
 * one of the pod's addresses as its sender, or 0.0.0.0 (an address probe, RFC 5227). Other frames
 * claim no IP address. Returns 0 to pass, else the reason to drop for.
 */
static __always_inline int sl_arp_spoofed(struct __sk_buff *skb, const struct sl_endpoint_value *ep,
					  struct sl_pkt *p)
{
	int r = sl_parse_arp(skb, p->t.saddr, p->t.daddr);
	if (r == SL_ARP_NONE)
		return 0;
	if (r == SL_ARP_MALFORMED)
		return SL_REASON_MALFORMED;
	/* For the event: the addresses the ARP packet claims and asks for. */
	p->family = SL_FAMILY_V4;
	__u32 spa;
	__builtin_memcpy(&spa, p->t.saddr, 4);
	if (spa == 0 || sl_own_address(ep->ep_id, SL_FAMILY_V4, p->t.saddr))
		return 0;
	return SL_REASON_SOURCE_SPOOFED;
}

/*
 * What conntrack decides for a packet of the tracked flow ct, travelling in dir at endpoint ep: 1 when
 * it decides (d filled, the entry touched), 0 when the policy must (the endpoint's policy changed since
 * the flow was allowed).
 */
static __always_inline int sl_ct_decides(const struct sl_endpoint_value *ep, __u8 dir, struct sl_ct_value *ct,
					 struct sl_decision *d)
{
	if (ct->init_dir != dir) {
		/* Reply: the flow was started from the other side and allowed there. */
		d->verdict = SL_VERDICT_ALLOW;
		d->reason = SL_REASON_CT_REPLY;
		sl_ct_touch(ct);
		/* Counted to its rule only under the policy that allowed it: a slot may since be another's. */
		if (ct->policy_rev == ep->policy_rev)
			sl_ct_counted(ct, d);
		return 1;
	}
	/* Established: a flow this endpoint initiated (or accepted) in this direction. */
	if (ct->policy_rev == ep->policy_rev) {
		d->verdict = SL_VERDICT_ALLOW;
		d->reason = SL_REASON_CT_ESTABLISHED;
		sl_ct_touch(ct);
		ct->packets += 1;
		sl_ct_counted(ct, d);
		return 1;
	}
	return 0;
}

/* Conntrack and policy for a packet of family (a constant: each family gets its own copy); fills d. */
static __always_inline void sl_judge(const struct sl_endpoint_value *ep, __u8 dir, struct sl_pkt *p, __u8 family,
				     int check_source, struct sl_decision *d)
{
	union sl_ct_key ck;

	if (p->icmp == SL_ICMP_NDP) {
		d->verdict = SL_VERDICT_ALLOW;
		d->reason = SL_REASON_NDP;
		return;
	}

	/* One lookup finds the flow whether this packet continues it or replies to it. */
	sl_ct_key(&ck, family, ep->ep_id, dir, &p->t);
	struct sl_ct_value *ct = bpf_map_lookup_elem(sl_ct_map(family), &ck);
	if (ct && sl_ct_decides(ep, dir, ct, d))
		return;
	/* Conntrack did not decide: the source must be the pod's own (see sl_source_precheck). */
	if (check_source && !sl_source_addr_ok(ep, p, family)) {
		d->verdict = SL_VERDICT_DENY;
		d->reason = SL_REASON_SOURCE_SPOOFED;
		if (ct) /* a flow from an address the pod lost: cut, as a revoked allow is */
			bpf_map_delete_elem(sl_ct_map(family), &ck);
		return;
	}
	if (!ct && p->icmp == SL_ICMP_ERROR && p->has_inner) {
		/*
		 * ICMP error about a tracked flow. The quoted packet was sent by the side receiving the error,
		 * so it travelled in the other direction: the flow's own packet or a reply, both under one key.
		 */
		union sl_ct_key ik;
		sl_ct_key(&ik, family, ep->ep_id, dir ^ 1, &p->inner);
		if (bpf_map_lookup_elem(sl_ct_map(family), &ik)) {
			d->verdict = SL_VERDICT_ALLOW;
			d->reason = SL_REASON_CT_RELATED;
			return;
		}
	}

	/* A new flow, or a tracked one whose endpoint's policy changed since it was allowed. */
	sl_policy(ep, dir, p, family, d);

	if (ct) {
		/* A revoked allow cuts the flow. */
		if (d->verdict != SL_VERDICT_ALLOW) {
			bpf_map_delete_elem(sl_ct_map(family), &ck);
			return;
		}
		ct->policy_rev = ep->policy_rev;
		sl_ct_touch(ct);
		ct->packets += 1;
		ct->slot = d->slot;
		ct->audit_slot = d->audit_slot;
		ct->flags = d->audit_verdict != SL_VERDICT_NONE ? SL_CT_AUDIT : 0;
		return;
	}
	if (d->verdict != SL_VERDICT_ALLOW || p->icmp == SL_ICMP_ERROR)
		return; /* an error message is not a flow of its own */

	/* Allowed, and the Audit policies disagree: they would have denied it. */
	struct sl_ct_value nv = {
		.last_seen_ns = bpf_ktime_get_coarse_ns(),
		.policy_rev = ep->policy_rev,
		.packets = 1,
		.init_dir = dir,
		.flags = d->audit_verdict != SL_VERDICT_NONE ? SL_CT_AUDIT : 0,
		.slot = d->slot,
		.audit_slot = d->audit_slot,
	};
	bpf_map_update_elem(sl_ct_map(family), &ck, &nv, BPF_ANY);
}

/* A judged packet's counters (endpoint, node, rules) and its sampled event. */
static __always_inline void sl_account(struct __sk_buff *skb, const struct sl_endpoint_value *ep, __u8 dir,
				       const struct sl_pkt *p, struct sl_decision *d)
{
	sl_count(ep->slot, dir, d->verdict, d->reason, skb->len);
	sl_count_rule(d->slot, d->flow, skb->len);
	sl_count_rule(d->audit_slot, d->flow, skb->len);
	sl_event(skb, ep, dir, p, d);
}

/*
 * Host routing in BPF (SL_CFG_HOST_ROUTING), for a whole (unfragmented, not ICMP error) packet its
 * sender's egress allowed. When the host would route it to another local endpoint and that endpoint's
 * conntrack already decides it (a flow established under the receiver's current policy, or a reply),
 * the receiver's ingress is judged and accounted here, the packet is forwarded as the host would
 * forward it (hop limit, next hop's addresses) and put straight into the receiver's namespace
 * (bpf_redirect_peer): the host's forwarding path and the second hook are skipped.
 *
 * Anything else returns TC_ACT_OK and goes the host's way, to be judged by the receiver's own hook: a
 * new flow, a revalidation, an expiring hop limit, an unresolved neighbor. So does every flow whose
 * tuple the host rewrites (a Service's DNAT, its replies, masquerading): the receiver's conntrack then
 * holds the rewritten tuple, which this packet does not carry, so it never matches here, and the
 * host's NAT keeps seeing all of it.
 */
static __always_inline int sl_host_route(struct __sk_buff *skb, const struct sl_pkt *p, __u8 family)
{
	/* Only what the host would route: a frame addressed to the host-side interface itself. */
	if (skb->pkt_type != PACKET_HOST)
		return TC_ACT_OK;
	__u32 zero = 0;
	const struct sl_config *cfg = bpf_map_lookup_elem(&sl_cfg_v5, &zero);
	if (!cfg || !(cfg->flags & SL_CFG_HOST_ROUTING))
		return TC_ACT_OK;

	struct bpf_fib_lookup f = {
		.family = family,
		.l4_protocol = p->t.proto,
		.sport = p->t.sport,
		.dport = p->t.dport,
		.ifindex = skb->ifindex,
	};
	__u8 hops;
	__u8 l3proto = 0;
	if (family == SL_FAMILY_V4) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return TC_ACT_OK;
		hops = ip.ttl;
		l3proto = ip.protocol;
		f.tos = ip.tos;
		f.ipv4_src = ip.saddr;
		f.ipv4_dst = ip.daddr;
	} else {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
			return TC_ACT_OK;
		hops = ip6.hop_limit;
		__be32 head;
		__builtin_memcpy(&head, &ip6, 4);
		f.flowinfo = head & bpf_htonl(0x0fffffff);
		__builtin_memcpy(f.ipv6_src, &ip6.saddr, 16);
		__builtin_memcpy(f.ipv6_dst, &ip6.daddr, 16);
	}
	/* An expiring packet gets the host's ICMP error. */
	if (hops <= 1)
		return TC_ACT_OK;
	/*
	 * No tot_len: the lookup then checks the packet itself against the next hop's MTU, segments of a
	 * GSO packet by their own length; one too big goes the host's way (fragmented, or its ICMP error).
	 */
	if (bpf_fib_lookup(skb, &f, sizeof(f), 0) != BPF_FIB_LKUP_RET_SUCCESS || f.ifindex == skb->ifindex)
		return TC_ACT_OK;
	struct sl_endpoint_key ek = {.ifindex = f.ifindex};
	const struct sl_endpoint_value *to = bpf_map_lookup_elem(&sl_ep_v5, &ek);
	if (!to)
		return TC_ACT_OK;
	union sl_ct_key ck;
	sl_ct_key(&ck, family, to->ep_id, SL_DIR_INGRESS, &p->t);
	struct sl_ct_value *ct = bpf_map_lookup_elem(sl_ct_map(family), &ck);
	struct sl_decision d = {};
	if (!ct || !sl_ct_decides(to, SL_DIR_INGRESS, ct, &d))
		return TC_ACT_OK;

	/*
	 * Only the first write can fail (no memory to make the packet's head writable); the later ones lie
	 * within the part it made writable. The packet is then unchanged, and goes the host's way.
	 */
	hops -= 1;
	if (family == SL_FAMILY_V4) {
		__be16 was = bpf_htons((__u16)(hops + 1) << 8 | l3proto);
		__be16 now = bpf_htons((__u16)hops << 8 | l3proto);
		if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), was, now, sizeof(now)) ||
		    bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), &hops, 1, 0))
			return TC_ACT_OK;
	} else if (bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct ipv6hdr, hop_limit), &hops, 1, 0)) {
		return TC_ACT_OK;
	}
	if (bpf_skb_store_bytes(skb, 0, f.dmac, ETH_ALEN, 0) || bpf_skb_store_bytes(skb, ETH_ALEN, f.smac, ETH_ALEN, 0))
		return TC_ACT_OK;
	sl_account(skb, to, SL_DIR_INGRESS, p, &d);
	return bpf_redirect_peer(f.ifindex, 0);
}

static __always_inline int sl_decide(struct __sk_buff *skb, __u8 dir)
{
#ifdef SL_PASS_ALL
	/* The benchmarks' floor, attached where Sluice attaches: what the hooks cost before any lookup. */
	return TC_ACT_OK;
#endif
	struct sl_endpoint_key ek = {.ifindex = skb->ifindex};
	/*
	 * Read in place, not copied (it is big): an update replaces the element and frees the old one only
	 * after an RCU grace period, so every field read here comes from one endpoint version.
	 */
	const struct sl_endpoint_value *ep = bpf_map_lookup_elem(&sl_ep_v5, &ek);
	if (!ep)
		return TC_ACT_OK;

	struct sl_pkt p = {};
	struct sl_decision d = {};
	int routable = 0;
	/*
	 * Only what the pod sends is checked (dir is a constant: the program for the other direction has no
	 * such code), and only where the writer recorded the pod's addresses (SL_EP_SOURCE_CHECK).
	 * SL_NO_SOURCE_CHECK compiles it out, for the benchmark that prices it.
	 */
#ifndef SL_NO_SOURCE_CHECK
	int check_source = dir == SL_DIR_EGRESS && (ep->flags & SL_EP_SOURCE_CHECK);
#else
	int check_source = 0;
#endif
	int r = sl_parse(skb, &p);
	if (r == SL_PARSE_NOT_IP) {
		int why = check_source ? sl_arp_spoofed(skb, ep, &p) : 0;
		if (!why)
			return TC_ACT_OK;
		d.verdict = SL_VERDICT_DENY;
		d.reason = why;
	} else if (r == SL_PARSE_MALFORMED) {
		d.verdict = SL_VERDICT_DENY;
		d.reason = SL_REASON_MALFORMED;
	} else if (check_source && !sl_source_precheck(skb, ep, &p)) {
		d.verdict = SL_VERDICT_DENY;
		d.reason = SL_REASON_SOURCE_SPOOFED;
	} else if (p.frag == SL_FRAG_LATER) {
		/* No ports to judge by: follow the datagram's first fragment, else drop. */
		struct sl_frag_key fk;
		sl_frag_key(&fk, ep->ep_id, dir, &p);
		struct sl_frag_value *fv = bpf_map_lookup_elem(&sl_frag_v5, &fk);
		d.verdict = fv && fv->verdict == SL_VERDICT_ALLOW ? SL_VERDICT_ALLOW : SL_VERDICT_DENY;
		d.reason = SL_REASON_FRAGMENT;
		/* A fragment without its allowed first: say so if its source is borrowed (the key holds it). */
		if (d.verdict != SL_VERDICT_ALLOW && check_source && !sl_source_addr_ok(ep, &p, p.family))
			d.reason = SL_REASON_SOURCE_SPOOFED;
	} else {
		if (p.family == SL_FAMILY_V4)
			sl_judge(ep, dir, &p, SL_FAMILY_V4, check_source, &d);
		else
			sl_judge(ep, dir, &p, SL_FAMILY_V6, check_source, &d);
		if (p.frag == SL_FRAG_FIRST && d.verdict == SL_VERDICT_ALLOW) {
			struct sl_frag_key fk;
			struct sl_frag_value fv = {.verdict = SL_VERDICT_ALLOW};
			sl_frag_key(&fk, ep->ep_id, dir, &p);
			bpf_map_update_elem(&sl_frag_v5, &fk, &fv, BPF_ANY);
		}
		routable = p.frag == SL_FRAG_NONE && p.icmp != SL_ICMP_ERROR && p.icmp != SL_ICMP_NDP;
	}

	sl_account(skb, ep, dir, &p, &d);
	if (d.verdict != SL_VERDICT_ALLOW)
		return TC_ACT_SHOT;
	/* dir is a constant: only the host-side ingress hook, where a peer redirect may start, has this. */
	if (dir == SL_DIR_EGRESS && routable)
		return p.family == SL_FAMILY_V4 ? sl_host_route(skb, &p, SL_FAMILY_V4) : sl_host_route(skb, &p, SL_FAMILY_V6);
	return TC_ACT_OK;
}

SEC("tc")
int sl_from_pod(struct __sk_buff *skb)
{
	return sl_decide(skb, SL_DIR_EGRESS);
}

SEC("tc")
int sl_to_pod(struct __sk_buff *skb)
{
	return sl_decide(skb, SL_DIR_INGRESS);
}
