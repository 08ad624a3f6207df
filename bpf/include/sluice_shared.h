/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every struct and constant shared between the BPF programs and user space.
 * User space never keeps a copy of these layouts: the build reads them back from the BTF
 * of the compiled object (scripts/gen-layout.mjs) into operator/src/datapath/codec/layout.generated.ts.
 * Constants are enums (not #defines) so that they reach BTF too.
 */
#ifndef SLUICE_SHARED_H
#define SLUICE_SHARED_H

#include <linux/types.h>

/* Bumped whenever a map's key or value layout changes; it is part of every pinned map name. */
enum sl_layout { SL_LAYOUT_VERSION = 5 };

/* Traffic direction as seen by the endpoint (pod), not by the host interface. */
enum sl_dir {
	SL_DIR_INGRESS = 0, /* to the pod: host-side egress hook */
	SL_DIR_EGRESS = 1,  /* from the pod: host-side ingress hook */
};

/* The decision stored in policy entries and reported in events. */
enum sl_verdict {
	SL_VERDICT_NONE = 0,
	SL_VERDICT_ALLOW = 1,
	SL_VERDICT_DENY = 2,
};

/* Reserved security identities; cluster identities start at SL_ID_CLUSTER_MIN. */
enum sl_identity {
	SL_ID_ANY = 0, /* wildcard peer in policy keys */
	SL_ID_HOST = 1,
	SL_ID_WORLD = 2,
	SL_ID_UNMANAGED = 3,
	SL_ID_INIT = 5,
	SL_ID_REMOTE_NODE = 6,
	SL_ID_CLUSTER_MIN = 256,
};

/*
 * IP protocol numbers that policy entries and keys carry (the packet's protocol / next-header number);
 * SL_PROTO_ANY (0) in a policy entry matches every protocol and port.
 */
enum sl_proto {
	SL_PROTO_ANY = 0,
	SL_PROTO_ICMP = 1,
	SL_PROTO_TCP = 6,
	SL_PROTO_UDP = 17,
	SL_PROTO_ICMPV6 = 58,
	SL_PROTO_SCTP = 132,
};

/* Address families as stored in keys (AF_INET / AF_INET6 values). */
enum sl_family { SL_FAMILY_V4 = 2, SL_FAMILY_V6 = 10 };

/*
 * Endpoint flags: which directions fall back to deny when no policy entry matches, and whether the pod's
 * own addresses are in sl_src. A writer that predates sl_src never sets SL_EP_SOURCE_CHECK, so a program
 * with the check, run over its maps, does not drop the pod's traffic for want of addresses.
 */
enum sl_endpoint_flags {
	SL_EP_DEFAULT_DENY_INGRESS = 1,
	SL_EP_DEFAULT_DENY_EGRESS = 2,
	SL_EP_SOURCE_CHECK = 4, /* what the pod sends must come from an address sl_src holds for it */
	/* The default if the Audit policies were enforced; the writer sets them (equal to the two above when
	 * those policies change no default). A difference is reported, never enforced. */
	SL_EP_AUDIT_DENY_INGRESS = 8,
	SL_EP_AUDIT_DENY_EGRESS = 16,
};

/* Why an event was emitted or a packet dropped. A new reason goes last: SL_VERDICT_REASONS follows it. */
enum sl_reason {
	SL_REASON_POLICY = 0,      /* a policy entry decided */
	SL_REASON_DEFAULT = 1,     /* no entry matched: endpoint default */
	SL_REASON_CT_REPLY = 2,    /* reply of a tracked flow */
	SL_REASON_CT_ESTABLISHED = 3, /* tracked forward flow, policy revision unchanged */
	SL_REASON_CT_RELATED = 4,  /* ICMP error related to a tracked flow */
	SL_REASON_FRAGMENT = 5,    /* non-first fragment, decided by its first fragment */
	SL_REASON_MALFORMED = 6,   /* could not be parsed: dropped */
	SL_REASON_NO_ENDPOINT = 7, /* interface not managed: passed untouched */
	SL_REASON_NDP = 8,         /* IPv6 neighbor discovery (ICMPv6 133-137): passes, like ARP */
	SL_REASON_SOURCE_SPOOFED = 9, /* sent by the pod from an address not its own (IP, ARP, NA): dropped */
};

/* Map capacities (max_entries of each pinned map); user space checks compiled state against them. */
enum sl_capacity {
	SL_MAX_IPCACHE = 524288,
	SL_MAX_ENDPOINTS = 4096,
	SL_MAX_POLICY = 1048576,
	SL_MAX_CONNTRACK = 262144,
	SL_MAX_FRAGMENTS = 16384,
	SL_MAX_COUNTERS = 16384,        /* SL_MAX_ENDPOINTS x SL_COUNTERS_PER_ENDPOINT */
	SL_MAX_SOURCES = 16384,         /* SL_MAX_ENDPOINTS x 4 addresses (a dual-stack pod has 2) */
	SL_MAX_RULE_COUNTERS = 65536,   /* rule counter slots (a __u16 slot; 0 is never counted) */
	SL_EVENTS_RING_BYTES = 1048576, /* ring buffer size in bytes */
};

/* Bit widths of the policy key's variable tail, for LPM prefix lengths. */
enum sl_policy_prefix {
	SL_POLICY_PREFIX_FIXED = 80,  /* ep_id + identity + gen + dir: always matched exactly */
	SL_POLICY_PREFIX_PROTO = 88,  /* + protocol */
	SL_POLICY_PREFIX_FULL = 104,  /* + 16-bit destination port (ICMP: type << 8 | code) */
};

/* ipcache key: LPM over family then address; prefixlen = 32 + address prefix bits. */
struct sl_ipcache_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16]; /* IPv4 in the first 4 bytes, network order */
};

/* ipcache host key of an IPv4 address (a /32): the host hash of that family. */
struct sl_ip4_key {
	__u8 addr[4]; /* network order */
};

/* ipcache host key of an IPv6 address (a /128). */
struct sl_ip6_key {
	__u8 addr[16];
};

/* ipcache value: the security identity of every address in the prefix. */
struct sl_ipcache_value {
	__u32 identity;
	__u32 flags;
};

/*
 * Policy: the entries of one (endpoint, generation, direction, peer identity) are a group, found by one
 * hash lookup (sl_pset). A group of at most SL_POLICY_INLINE entries is stored whole in that value,
 * most specific first, so the first inline match is the longest-prefix answer. A bigger group keeps
 * its full-port entries in an exact hash (sl_pexact: a hit there is the longest prefix) and its other
 * entries inline, or, when even those do not fit, in the LPM trie (sl_pol). Lookup cost therefore does
 * not grow with the number of entries of other groups.
 */
enum sl_policy_inline { SL_POLICY_INLINE = 16 };

enum sl_policy_set_flags {
	SL_PSET_EXACT = 1, /* the group's full-port entries are in sl_pexact, not inline */
	SL_PSET_LPM = 2,   /* the group's other entries are in sl_pol, not inline */
};

/* policy group key (hash, host order). */
struct sl_policy_set_key {
	__u32 ep_id;
	__u32 identity; /* SL_ID_ANY for the wildcard group */
	__u8 gen;
	__u8 dir;
	__u8 pad[2];
};

/*
 * one inline entry, as a match on the packet's key: a 32-bit word whose bytes are the destination port
 * as it lies in the packet, the protocol and 0. The entry matches when (key & mask) == match: one AND
 * and one compare per entry. An entry for any protocol (and so any port) has mask 0.
 */
struct sl_policy_rule {
	__u32 match; /* bytes: port (network order, masked), protocol, 0 */
	__u32 mask;  /* bytes: port prefix mask (network order), 0xff (0 for any protocol), 0 */
};

/*
 * exact and LPM policy value, and an inline entry's: the verdict resolved at compile time (tiers, deny,
 * precedence folded in), and what the Audit policies would decide where that differs. slot and
 * audit_slot index the rule counters (sl_rcnt) of (endpoint, rule_id) and (endpoint, audit_rule_id);
 * 0 is not counted.
 */
struct sl_policy_value {
	__u8 verdict;        /* enum sl_verdict */
	__u8 audit_verdict;  /* SL_VERDICT_NONE: the Audit policies agree with verdict */
	__u16 slot;
	__u32 rule_id;       /* opaque id of the deciding rule, for events */
	__u32 audit_rule_id; /* the rule the Audit policies would decide by (0: their default) */
	__u16 audit_slot;
	__u8 pad[2];
};

/*
 * policy group value. exact_filter has bit ((port ^ port >> 6 ^ port >> 12 ^ proto) & 63) set (port in
 * host order) for every entry in sl_pexact: a clear bit means that lookup cannot hit and is skipped.
 */
struct sl_policy_set {
	__u8 count; /* inline rules in use, most specific first */
	__u8 flags; /* enum sl_policy_set_flags */
	__u8 pad[6];
	__u64 exact_filter;
	struct sl_policy_rule rules[SL_POLICY_INLINE];
	struct sl_policy_value results[SL_POLICY_INLINE]; /* of rules[i] */
};

/* exact policy key (hash, host order but the port): full-port entries of groups too big to inline. */
struct sl_policy_exact_key {
	__u32 ep_id;
	__u32 identity;
	__u8 gen;
	__u8 dir;
	__u8 proto;
	__u8 pad;
	__u8 port[2]; /* network order */
	__u8 pad2[2];
};

/*
 * LPM policy key, for groups whose non-full-port entries do not fit inline. Fixed part (ep_id,
 * identity, gen, dir) always matched; then protocol (0 = any, prefix stops before it) and destination
 * port in network order (prefix covers a power-of-two aligned port block, so a range is a few entries).
 */
struct sl_policy_key {
	__u32 prefixlen;
	__u32 ep_id;    /* big endian */
	__u32 identity; /* big endian */
	__u8 gen;
	__u8 dir;
	__u8 proto;
	__u8 port[2];   /* network order */
	__u8 pad[3];
};

/* endpoints key: the host-side interface a program runs on. */
struct sl_endpoint_key {
	__u32 ifindex;
};

/*
 * endpoints value: one local pod; rewriting it is the atomic switch of its policy. It carries the active
 * generation's wildcard (SL_ID_ANY) group of each direction, a copy of what sl_pset holds for it: every
 * packet that no entry of its peer's group decides needs that group, and here it costs no lookup.
 */
struct sl_endpoint_value {
	__u32 ep_id;      /* owner id used in policy, conntrack and fragment keys */
	__u32 identity;   /* the pod's own identity (for events) */
	__u32 policy_rev; /* bumped on every policy change; conntrack rechecks forward flows on mismatch */
	__u8 gen;         /* active policy generation (0 or 1): the half of the policy map in use */
	__u8 flags;       /* enum sl_endpoint_flags */
	__u16 slot;       /* dense index below SL_MAX_ENDPOINTS: the endpoint's counters */
	__u16 audit_slot[2]; /* by enum sl_dir: rule counter of packets whose fate the audited default changes */
	__u8 pad[2];
	struct sl_policy_set any[2]; /* by enum sl_dir; count 0 and no flags: no wildcard entries */
};

/*
 * conntrack keys: one tracked flow at one enforcement point, seen as a packet travelling in direction
 * dir from saddr:sport to daddr:dport. A flow and its replies share one entry: a packet (dir, tuple)
 * and its reply (the other dir, reversed tuple) are stored under whichever of the two has the lower
 * (address, port) as source, so every packet needs a single lookup (for a tuple equal to its own
 * reverse, dir is SL_DIR_INGRESS). Which side started the flow is in the value. One map per family:
 * the IPv4 key is half the size, and hashing and comparing it is what a new flow's lookup costs.
 */
struct sl_ct4_key {
	__u32 ep_id;
	__u8 dir;
	__u8 proto;
	__u16 sport;    /* network order; ICMP echo: identifier */
	__u16 dport;    /* network order; ICMP echo: 0 */
	__u8 pad[2];
	__u8 saddr[4];
	__u8 daddr[4];
};

/* The IPv6 conntrack key: as struct sl_ct4_key, the same fields at the same offsets before the addresses. */
struct sl_ct6_key {
	__u32 ep_id;
	__u8 dir;
	__u8 proto;
	__u16 sport;
	__u16 dport;
	__u8 pad[2];
	__u8 saddr[16];
	__u8 daddr[16];
};
_Static_assert(__builtin_offsetof(struct sl_ct4_key, saddr) == __builtin_offsetof(struct sl_ct6_key, saddr) &&
		       __builtin_offsetof(struct sl_ct4_key, dport) == __builtin_offsetof(struct sl_ct6_key, dport),
	       "conntrack keys share their fields before the addresses");

/*
 * A local pod's own address (sl_src): what it may send from. IPv4 in the first 4 bytes, the rest zero.
 * Keyed by ep_id, like policy, so an endpoint that moves to another interface keeps its addresses.
 */
struct sl_source_key {
	__u32 ep_id;
	__u8 family; /* enum sl_family */
	__u8 pad[3];
	__u8 addr[16];
};

/* sl_src value: presence is the answer; flags is reserved (0). */
struct sl_source_value {
	__u32 flags;
};

/* conntrack value flags. */
enum sl_ct_flags {
	SL_CT_AUDIT = 1, /* the Audit policies would have denied this flow: its packets count in audit_slot */
};

/*
 * conntrack value: who started the flow, when it was last seen, under which policy revision it was
 * allowed, and the rule counters its packets go to (those of the decision that allowed it). Layout 4's
 * value is the same size with zeroes where flags and the slots are: a valid value here (uncounted).
 */
struct sl_ct_value {
	__u64 last_seen_ns; /* CLOCK_MONOTONIC_COARSE (jiffy resolution) */
	__u32 policy_rev;
	__u32 packets;  /* packets in the initiator's direction */
	__u8 init_dir;  /* direction of the flow's first packet: the one rechecked against policy */
	__u8 flags;     /* enum sl_ct_flags */
	__u16 slot;
	__u16 audit_slot;
	__u8 pad[2];
};

/* fragment tracking key: the datagram a non-first fragment belongs to. */
struct sl_frag_key {
	__u32 ep_id;
	__u32 id;       /* IPv4 id (16 bits) or IPv6 fragment identification */
	__u8 dir;
	__u8 proto;
	__u8 family;
	__u8 pad;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* fragment tracking value: the verdict of the datagram's first fragment. */
struct sl_frag_value {
	__u8 verdict;
	__u8 pad[3];
};

/* counters: SL_COUNTERS_PER_ENDPOINT per-CPU slots per endpoint, at slot * 4 + dir * 2 + (verdict != ALLOW). */
enum sl_counters { SL_COUNTERS_PER_ENDPOINT = 4 };

/*
 * Node-wide verdict counters (sl_vcnt): SL_VERDICT_COUNTERS per-CPU slots, one per (direction, verdict,
 * reason), at (dir * 2 + (verdict != ALLOW)) * SL_VERDICT_REASONS + reason. Values are struct
 * sl_counter_value. SL_REASON_NO_ENDPOINT has a slot but is never counted (such packets are not judged).
 */
enum sl_verdict_counters {
	SL_VERDICT_REASONS = SL_REASON_SOURCE_SPOOFED + 1, /* every enum sl_reason: the last one + 1 */
	SL_VERDICT_COUNTERS = 2 * 2 * SL_VERDICT_REASONS,
};

/* counters value: packets and bytes. */
struct sl_counter_value {
	__u64 packets;
	__u64 bytes;
};

/*
 * rule counters (sl_rcnt): per (endpoint, rule, audit) slot, per CPU. A policy decision adds a flow and
 * its packet; a tracked flow's later packets add packets.
 */
struct sl_rule_counter {
	__u64 packets;
	__u64 bytes;
	__u64 flows;
};

/* datapath configuration: a single-entry array written by the agent. */
struct sl_config {
	__u32 event_sample_allow; /* emit 1 of N allowed-packet events; 0 = none */
	__u32 event_sample_deny;  /* emit 1 of N denied-packet events; 0 = none */
	__u32 events_per_sec;     /* per-CPU rate limit of emitted events; 0 = unlimited */
	__u32 flags;              /* enum sl_config_flags */
};

/*
 * Datapath configuration flags. A writer that predates a flag never sets it, so a program that knows
 * it, run with that writer's configuration, behaves as before.
 */
enum sl_config_flags {
	/*
	 * Host routing in BPF: a packet between two pods of this node whose flow conntrack already tracks at
	 * both ends goes from the sender's host-side hook straight into the receiver's namespace
	 * (bpf_redirect_peer), past the host's forwarding path. The agent sets it only while every
	 * endpoint's host-side interface is one end of a pair (veth, netkit): the redirect needs the peer.
	 */
	SL_CFG_HOST_ROUTING = 1,
};

/* event rate limiter state: per CPU. */
struct sl_ratelimit {
	__u64 window_start_ns;
	__u32 emitted;
	__u32 seen;
};

/* flow event on the ring buffer: one sampled verdict. */
struct sl_flow_event {
	__u64 ts_ns;
	__u32 ep_id;
	__u32 ep_identity;
	__u32 peer_identity;
	__u32 rule_id;
	__u8 dir;
	__u8 verdict;
	__u8 reason;
	__u8 family;
	__u8 proto;
	__u8 audit_verdict; /* SL_VERDICT_NONE unless the Audit policies would decide otherwise */
	__u16 sport;    /* network order */
	__u16 dport;    /* network order */
	__u16 len;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 audit_rule_id; /* the rule the Audit policies would decide by, with audit_verdict */
};

/*
 * Layout 3's keys of the state an upgrading agent carries over into this layout: conntrack (sl_ct_v3,
 * values struct sl_ct_value) and counters (sl_cnt_v3, per-CPU struct sl_counter_value). No program uses
 * them; operator/src/datapath/migrate.ts reads the old maps through them. Layout 4's conntrack keys and
 * values, and its counter map, are this layout's (struct sl_ct4_key, sl_ct6_key, sl_ct_value).
 */
struct sl_v3_ct_key {
	__u32 ep_id;
	__u8 dir;
	__u8 proto;
	__u8 family; /* enum sl_family */
	__u8 pad;
	__u16 sport; /* network order */
	__u16 dport; /* network order */
	__u8 saddr[16];
	__u8 daddr[16];
};

struct sl_v3_counter_key {
	__u32 ep_id;
	__u8 dir;
	__u8 verdict;
	__u8 pad[2];
};

/*
 * Layout 4's endpoint value (sl_ep_v4), read by the migration for each endpoint's counter slot (the
 * counters of sl_cnt_v4 are carried by endpoint id). any: layout 4's two struct sl_policy_set, 272 bytes
 * each, never read.
 */
struct sl_v4_endpoint_value {
	__u32 ep_id;
	__u32 identity;
	__u32 policy_rev;
	__u8 gen;
	__u8 flags;
	__u16 slot;
	__u8 any[544];
};

#endif /* SLUICE_SHARED_H */
