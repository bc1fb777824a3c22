/* The packet an ICMP error quotes. An error (destination unreachable, source
 * quench, redirect, time exceeded, parameter problem) carries the IPv4 header
 * and the first bytes of the packet it is about; Linux quotes up to 576 bytes.
 * When that packet belongs to a sealed flow the quote is its plaintext, so
 * such an error may leave only sealed, never in clear (docs/language.md,
 * "ICMP errors"). */
#ifndef SEALNET_ICMP_QUOTE_H
#define SEALNET_ICMP_QUOTE_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ipv4.h"
#include "parse.h"

#define ICMP_HDR_LEN 8 /* type, code, checksum, 4 bytes that depend on the type */

enum icmp_error_type {
	ICMP_ERR_DEST_UNREACH = 3,
	ICMP_ERR_SOURCE_QUENCH = 4,
	ICMP_ERR_REDIRECT = 5,
	ICMP_ERR_TIME_EXCEEDED = 11,
	ICMP_ERR_PARAMETER_PROB = 12,
};

enum icmp_quote_status {
	QUOTE_NONE = 0,      /* not an ICMP error (or not its first fragment): nothing quoted */
	QUOTE_FOUND = 1,     /* *inner is the quoted packet's 5-tuple */
	QUOTE_MALFORMED = 2, /* an error whose quote cannot be read: treat as quoting anything */
};

static __always_inline int icmp_is_error(__u8 type)
{
	return type == ICMP_ERR_DEST_UNREACH || type == ICMP_ERR_SOURCE_QUENCH || type == ICMP_ERR_REDIRECT ||
	       type == ICMP_ERR_TIME_EXCEEDED || type == ICMP_ERR_PARAMETER_PROB;
}

/* The quoted packet of an ICMP error in p's frame. A later fragment carries no
 * ICMP header to tell an error from anything else; errors are at most 576
 * bytes and so are never fragmented on links that carry sealed traffic. */
static __always_inline enum icmp_quote_status icmp_quoted_packet(struct __sk_buff *skb, const struct packet *p,
								 struct packet *inner)
{
	__u32 at = ETH_HLEN + p->ip_hlen;
	struct iphdr ip;
	__be16 ports[2];
	__u8 type;

	if (p->proto != IPPROTO_ICMP || p->later_fragment)
		return QUOTE_NONE;
	if (bpf_skb_load_bytes(skb, at, &type, sizeof(type)))
		return QUOTE_MALFORMED;
	if (!icmp_is_error(type))
		return QUOTE_NONE;
	at += ICMP_HDR_LEN;
	if (bpf_skb_load_bytes(skb, at, &ip, sizeof(ip)) || ipv4_version(&ip) != IPV4_VERSION ||
	    ipv4_hlen(&ip) < IPV4_MIN_HLEN)
		return QUOTE_MALFORMED;
	inner->src = bpf_ntohl(ip.saddr);
	inner->dst = bpf_ntohl(ip.daddr);
	inner->proto = ip.protocol;
	inner->later_fragment = (bpf_ntohs(ip.frag_off) & IP_OFFSET) != 0;
	inner->fragment = (bpf_ntohs(ip.frag_off) & (IP_MF | IP_OFFSET)) != 0;
	inner->ip_hlen = ipv4_hlen(&ip);
	inner->ip_tot_len = bpf_ntohs(ip.tot_len);
	inner->sport = 0;
	inner->dport = 0;
	if (!has_ports(inner->proto) || inner->later_fragment)
		return QUOTE_FOUND;
	if (bpf_skb_load_bytes(skb, at + inner->ip_hlen, ports, sizeof(ports)))
		return QUOTE_MALFORMED; /* RFC 792 quotes at least 8 bytes after the header */
	inner->sport = bpf_ntohs(ports[0]);
	inner->dport = bpf_ntohs(ports[1]);
	return QUOTE_FOUND;
}

#endif
