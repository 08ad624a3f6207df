/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing, kept apart from decisions: Ethernet (up to two VLAN tags) -> IPv4 (options,
 * fragments) or IPv6 (a bounded walk over extension headers) -> TCP/UDP/SCTP ports, ICMP and
 * ICMPv6 type/code/echo id, and for ICMP errors the tuple of the embedded packet.
 *
 * Reads go through bpf_skb_load_bytes (any offset, paged data too: a non-linear skb is never taken
 * for a truncated one); only the outer Ethernet and IP headers may come by direct access.
 * Anything that does not hold together is SL_PARSE_MALFORMED; the caller drops it.
 */
#ifndef SLUICE_PARSE_H
#define SLUICE_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "sluice_shared.h"

#define SL_MAX_VLAN 2
#define SL_MAX_EXT_HDRS 8

#define SL_NEXTHDR_HOP 0
#define SL_NEXTHDR_ROUTING 43
#define SL_NEXTHDR_FRAGMENT 44
#define SL_NEXTHDR_AUTH 51
#define SL_NEXTHDR_DEST 60

#define SL_IP_MF 0x2000
#define SL_IP_OFFSET 0x1fff

enum sl_parse_result {
	SL_PARSE_OK = 0,
	SL_PARSE_NOT_IP = 1,    /* ARP and other non-IP: not ours to judge */
	SL_PARSE_MALFORMED = 2, /* truncated or inconsistent: drop */
};

enum sl_frag_kind {
	SL_FRAG_NONE = 0,
	SL_FRAG_FIRST = 1, /* offset 0, more fragments: carries the L4 header */
	SL_FRAG_LATER = 2, /* offset > 0: no L4 header */
};

enum sl_icmp_kind {
	SL_ICMP_NONE = 0, /* not ICMP */
	SL_ICMP_ECHO_REQUEST = 1,
	SL_ICMP_ECHO_REPLY = 2,
	SL_ICMP_ERROR = 3, /* carries the offending packet's headers */
	SL_ICMP_NDP = 4,   /* IPv6 neighbor discovery */
	SL_ICMP_OTHER = 5,
};

/*
 * A flow tuple as the conntrack key wants it. ICMP echo: a request carries the identifier as
 * sport and 0 as dport, a reply 0 as sport and the identifier as dport, so reversing a reply's
 * tuple gives its request's tuple.
 */
struct sl_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
} __attribute__((aligned(8))); /* addresses at 8-byte boundaries: sl_tuple_order reads them as words */

struct sl_pkt {
	struct sl_tuple t;     /* the packet itself */
	struct sl_tuple inner; /* ICMP errors: the packet the error is about */
	__u32 frag_id;         /* IPv4 id or IPv6 fragment identification, host order */
	__be16 policy_port;    /* destination port; ICMP/ICMPv6: type << 8 | code */
	__u8 family;           /* SL_FAMILY_V4 / SL_FAMILY_V6 */
	__u8 frag;             /* enum sl_frag_kind */
	__u8 icmp;             /* enum sl_icmp_kind */
	__u8 has_inner;        /* inner holds a usable tuple */
	__u16 l4off;           /* where the outer transport header starts (a neighbor advertisement's target) */
};

/* Where the L4 header of one IP packet starts and what it holds. */
struct sl_l3 {
	__u32 l4off;
	__u32 end; /* end of the IP packet (bounded by skb->len) */
	__u32 frag_id;
	__u8 proto;
	__u8 frag;
};

static __always_inline int sl_load(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(skb, off, to, len);
}

/*
 * The outer headers, at small constant offsets, straight from the linear area when it holds them:
 * a few ns cheaper than a helper call. Only there: every such branch doubles what the verifier walks.
 */
static __always_inline int sl_load_front(struct __sk_buff *skb, __u32 off, void *to, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (off <= ETH_HLEN + 8 && data + off + len <= data_end) {
		__builtin_memcpy(to, data + off, len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, to, len);
}

/*
 * The outer transport ports, at a variable offset: straight from the linear area when it holds them
 * (the common case, and a helper call less per packet), else through the helper.
 */
static __always_inline int sl_load_ports(struct __sk_buff *skb, __u32 off, __be16 *ports)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (off < 512 && data + off + 4 <= data_end) {
		__builtin_memcpy(ports, data + off, 4);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, ports, 4);
}

/*
 * IPv4 header at off. inner: the copy inside an ICMP error, which is cut short by design, so its
 * total length is not checked against the packet.
 */
static __always_inline int sl_parse_ipv4(struct __sk_buff *skb, __u32 off, int inner,
					 struct sl_tuple *t, struct sl_l3 *l3)
{
	struct iphdr ip;

	if (inner ? sl_load(skb, off, &ip, sizeof(ip)) : sl_load_front(skb, off, &ip, sizeof(ip)))
		return SL_PARSE_MALFORMED;
	if (ip.version != 4 || ip.ihl < 5)
		return SL_PARSE_MALFORMED;
	__u32 hlen = ip.ihl * 4;
	__u32 tot = bpf_ntohs(ip.tot_len);
	__u32 end = skb->len;
	if (!inner) {
		/* tot_len 0 is how BIG TCP marks a GSO packet over 64 KiB: trust the skb then. */
		if (tot != 0) {
			if (tot < hlen || off + tot > skb->len)
				return SL_PARSE_MALFORMED;
			end = off + tot;
		}
	}
	__builtin_memcpy(t->saddr, &ip.saddr, 4);
	__builtin_memcpy(t->daddr, &ip.daddr, 4);
	t->proto = ip.protocol;
	l3->proto = ip.protocol;
	l3->l4off = off + hlen;
	l3->end = end;
	l3->frag_id = bpf_ntohs(ip.id);

	__u16 fo = bpf_ntohs(ip.frag_off);
	if (fo & SL_IP_OFFSET) {
		/* RFC 1858: a TCP fragment at offset 8 can only serve to overwrite the header. */
		if ((fo & SL_IP_OFFSET) == 1 && ip.protocol == IPPROTO_TCP)
			return SL_PARSE_MALFORMED;
		l3->frag = SL_FRAG_LATER;
	} else if (fo & SL_IP_MF) {
		l3->frag = SL_FRAG_FIRST;
	} else {
		l3->frag = SL_FRAG_NONE;
	}
	if (l3->l4off > end)
		return SL_PARSE_MALFORMED;
	return SL_PARSE_OK;
}

/* IPv6 header at off, then at most SL_MAX_EXT_HDRS extension headers. */
static __always_inline int sl_parse_ipv6(struct __sk_buff *skb, __u32 off, int inner,
					 struct sl_tuple *t, struct sl_l3 *l3)
{
	struct ipv6hdr ip6;

	if (inner ? sl_load(skb, off, &ip6, sizeof(ip6)) : sl_load_front(skb, off, &ip6, sizeof(ip6)))
		return SL_PARSE_MALFORMED;
	if (ip6.version != 6)
		return SL_PARSE_MALFORMED;
	__u32 plen = bpf_ntohs(ip6.payload_len);
	__u32 end = skb->len;
	if (!inner && plen != 0) {
		/* payload_len 0: jumbogram / BIG TCP, bounded by the skb instead. */
		if (off + sizeof(ip6) + plen > skb->len)
			return SL_PARSE_MALFORMED;
		end = off + sizeof(ip6) + plen;
	}
	__builtin_memcpy(t->saddr, &ip6.saddr, 16);
	__builtin_memcpy(t->daddr, &ip6.daddr, 16);
	l3->end = end;
	l3->frag = SL_FRAG_NONE;
	l3->frag_id = 0;

	__u8 nexthdr = ip6.nexthdr;
	__u32 cur = off + sizeof(ip6);
	int seen_frag = 0;

	for (int i = 0; i < SL_MAX_EXT_HDRS; i++) {
		if (nexthdr == SL_NEXTHDR_HOP || nexthdr == SL_NEXTHDR_ROUTING ||
		    nexthdr == SL_NEXTHDR_DEST || nexthdr == SL_NEXTHDR_AUTH) {
			__u8 h[2];
			if (cur + 2 > end || sl_load(skb, cur, h, 2))
				return SL_PARSE_MALFORMED;
			__u32 len = nexthdr == SL_NEXTHDR_AUTH ? ((__u32)h[1] + 2) * 4 : ((__u32)h[1] + 1) * 8;
			nexthdr = h[0];
			cur += len;
			continue;
		}
		if (nexthdr == SL_NEXTHDR_FRAGMENT) {
			struct {
				__u8 nexthdr;
				__u8 reserved;
				__be16 frag_off;
				__be32 id;
			} fh;
			if (seen_frag || cur + sizeof(fh) > end || sl_load(skb, cur, &fh, sizeof(fh)))
				return SL_PARSE_MALFORMED;
			seen_frag = 1;
			__u16 fo = bpf_ntohs(fh.frag_off);
			nexthdr = fh.nexthdr;
			cur += sizeof(fh);
			l3->frag_id = bpf_ntohl(fh.id);
			if (fo >> 3) {
				/* Non-first fragment: what follows is payload, not headers. */
				l3->frag = SL_FRAG_LATER;
				break;
			}
			if (fo & 1)
				l3->frag = SL_FRAG_FIRST;
			/* offset 0 without M is an atomic fragment: a whole packet. */
			continue;
		}
		/* An upper-layer protocol (or "no next header"): done. */
		t->proto = nexthdr;
		l3->proto = nexthdr;
		if (cur > end)
			return SL_PARSE_MALFORMED;
		l3->l4off = cur;
		return SL_PARSE_OK;
	}
	if (l3->frag != SL_FRAG_LATER)
		return SL_PARSE_MALFORMED; /* more extension headers than we walk */
	t->proto = nexthdr;
	l3->proto = nexthdr;
	if (cur > end)
		return SL_PARSE_MALFORMED;
	l3->l4off = cur;
	return SL_PARSE_OK;
}

static __always_inline int sl_is_icmp_error(int v6, __u8 type)
{
	if (v6)
		return type >= 1 && type <= 4; /* dest unreachable, packet too big, time exceeded, param problem */
	return type == 3 || type == 11 || type == 12; /* dest unreachable, time exceeded, param problem */
}

/*
 * Transport header at l3->l4off. inner: the 8 bytes an ICMP error is guaranteed to quote are
 * enough (ports); the outer packet must carry the protocol's whole fixed header.
 */
static __always_inline int sl_parse_l4(struct __sk_buff *skb, int v6, int inner, const struct sl_l3 *l3,
				       struct sl_tuple *t, __be16 *policy_port, __u8 *icmp)
{
	__u32 off = l3->l4off;
	__u32 need;
	__u8 proto = l3->proto;

	*icmp = SL_ICMP_NONE;
	t->sport = 0;
	t->dport = 0;
	*policy_port = 0;

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
		if (inner)
			need = 4;
		else
			need = proto == IPPROTO_TCP ? 20 : proto == IPPROTO_UDP ? 8 : 12;
		__be16 ports[2];
		if (off + need > l3->end ||
		    (inner ? sl_load(skb, off, ports, sizeof(ports)) : sl_load_ports(skb, off, ports)))
			return SL_PARSE_MALFORMED;
		t->sport = ports[0];
		t->dport = ports[1];
		*policy_port = ports[1];
		return SL_PARSE_OK;
	}

	if ((!v6 && proto == IPPROTO_ICMP) || (v6 && proto == SL_PROTO_ICMPV6)) {
		struct {
			__u8 type;
			__u8 code;
			__be16 csum;
			__be16 id;
			__be16 seq;
		} ih;
		if (off + sizeof(ih) > l3->end || sl_load(skb, off, &ih, sizeof(ih)))
			return SL_PARSE_MALFORMED;
		*policy_port = bpf_htons(((__u16)ih.type << 8) | ih.code);
		__u8 req = v6 ? 128 : 8, rep = v6 ? 129 : 0;
		if (ih.type == req) {
			*icmp = SL_ICMP_ECHO_REQUEST;
			t->sport = ih.id;
		} else if (ih.type == rep) {
			*icmp = SL_ICMP_ECHO_REPLY;
			t->dport = ih.id;
		} else if (sl_is_icmp_error(v6, ih.type)) {
			*icmp = SL_ICMP_ERROR;
		} else if (v6 && ih.type >= 133 && ih.type <= 137) {
			*icmp = SL_ICMP_NDP;
		} else {
			*icmp = SL_ICMP_OTHER;
		}
		return SL_PARSE_OK;
	}

	/* Other protocols have no ports: policy can still match them by protocol. */
	return SL_PARSE_OK;
}

/* The packet an ICMP error quotes, right after the 8-byte ICMP header. */
static __always_inline int sl_parse_inner(struct __sk_buff *skb, int v6, __u32 off, struct sl_pkt *p)
{
	struct sl_l3 l3 = {};
	__be16 unused_port;
	__u8 unused_icmp;
	int r;

	if (v6)
		r = sl_parse_ipv6(skb, off, 1, &p->inner, &l3);
	else
		r = sl_parse_ipv4(skb, off, 1, &p->inner, &l3);
	if (r != SL_PARSE_OK)
		return r;
	if (l3.frag == SL_FRAG_LATER)
		return SL_PARSE_OK; /* no ports to relate it by: policy decides the error itself */
	r = sl_parse_l4(skb, v6, 1, &l3, &p->inner, &unused_port, &unused_icmp);
	if (r != SL_PARSE_OK)
		return r;
	p->has_inner = 1;
	return SL_PARSE_OK;
}

/* Parses skb into p. p must be zeroed by the caller (addresses are copied into parts of it). */
static __always_inline int sl_parse(struct __sk_buff *skb, struct sl_pkt *p)
{
	struct sl_l3 l3 = {};
	__u32 off = ETH_HLEN;
	__be16 h_proto;
	int r;

	if (sl_load_front(skb, offsetof(struct ethhdr, h_proto), &h_proto, sizeof(h_proto)))
		return SL_PARSE_NOT_IP; /* shorter than an Ethernet header: not IP either */

	for (int i = 0; i < SL_MAX_VLAN; i++) {
		if (h_proto != bpf_htons(ETH_P_8021Q) && h_proto != bpf_htons(ETH_P_8021AD))
			break;
		/* VLAN tag: TCI then the encapsulated EtherType. */
		if (sl_load(skb, off + 2, &h_proto, sizeof(h_proto)))
			return SL_PARSE_MALFORMED;
		off += 4;
	}

	int v6;
	if (h_proto == bpf_htons(ETH_P_IP)) {
		v6 = 0;
		p->family = SL_FAMILY_V4;
		r = sl_parse_ipv4(skb, off, 0, &p->t, &l3);
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		v6 = 1;
		p->family = SL_FAMILY_V6;
		r = sl_parse_ipv6(skb, off, 0, &p->t, &l3);
	} else if (h_proto == bpf_htons(ETH_P_8021Q) || h_proto == bpf_htons(ETH_P_8021AD)) {
		return SL_PARSE_MALFORMED; /* more tags than we look through: do not let it slip by */
	} else {
		return SL_PARSE_NOT_IP;
	}
	if (r != SL_PARSE_OK)
		return r;

	p->frag = l3.frag;
	p->frag_id = l3.frag_id;
	p->l4off = l3.l4off;
	if (l3.frag == SL_FRAG_LATER)
		return SL_PARSE_OK;

	r = sl_parse_l4(skb, v6, 0, &l3, &p->t, &p->policy_port, &p->icmp);
	if (r != SL_PARSE_OK)
		return r;
	if (p->icmp == SL_ICMP_ERROR)
		return sl_parse_inner(skb, v6, l3.l4off + 8, p);
	return SL_PARSE_OK;
}

/* ARP for IPv4 over Ethernet: the fields up to the target protocol address. */
struct sl_arp {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

enum sl_arp_result {
	SL_ARP_NONE = 0,      /* not ARP, or ARP for another protocol than IPv4: nothing to check */
	SL_ARP_IPV4 = 1,      /* spa and tpa hold the sender's and target's IPv4 addresses */
	SL_ARP_MALFORMED = 2, /* ARP for IPv4 too short to hold its addresses */
};

/*
 * A frame sl_parse found not to be IP: ARP for IPv4 fills spa and tpa. Only the source check reads it,
 * so IP packets never pay for it. VLAN tags are looked through as sl_parse does.
 */
static __always_inline int sl_parse_arp(struct __sk_buff *skb, __u8 spa[4], __u8 tpa[4])
{
	__u32 off = ETH_HLEN;
	__be16 h_proto;
	struct sl_arp a;

	if (sl_load(skb, offsetof(struct ethhdr, h_proto), &h_proto, sizeof(h_proto)))
		return SL_ARP_NONE;
	for (int i = 0; i < SL_MAX_VLAN; i++) {
		if (h_proto != bpf_htons(ETH_P_8021Q) && h_proto != bpf_htons(ETH_P_8021AD))
			break;
		if (sl_load(skb, off + 2, &h_proto, sizeof(h_proto)))
			return SL_ARP_NONE;
		off += 4;
	}
	if (h_proto != bpf_htons(ETH_P_ARP))
		return SL_ARP_NONE;
	/* The fixed part first: ptype and plen say whether the addresses are IPv4 ones. */
	if (sl_load(skb, off, &a, 8))
		return SL_ARP_MALFORMED;
	if (a.ptype != bpf_htons(ETH_P_IP))
		return SL_ARP_NONE;
	if (a.hlen != 6 || a.plen != 4 || sl_load(skb, off, &a, sizeof(a)))
		return SL_ARP_MALFORMED;
	__builtin_memcpy(spa, a.spa, 4);
	__builtin_memcpy(tpa, a.tpa, 4);
	return SL_ARP_IPV4;
}

#endif /* SLUICE_PARSE_H */
