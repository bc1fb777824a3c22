/* Safe Ethernet/IPv4/TCP/UDP/ICMP parsing: every access is bounds-checked
 * against data_end before it is read. */
#ifndef SEALNET_PARSE_H
#define SEALNET_PARSE_H

#include "kernel_types.h"
#include "ipv4.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Enough linear bytes for Ethernet, the longest IPv4 header and a TCP header. */
#define PARSE_PULL_LEN (ETH_HLEN + IPV4_MAX_HLEN + sizeof(struct tcphdr))

struct packet {
	__u32 src;   /* host byte order */
	__u32 dst;
	__u32 proto;
	__u32 sport; /* 0 for protocols without ports */
	__u32 dport;
	__u32 later_fragment; /* non-first fragment: no L4 header, ports unknown */
	__u32 fragment; /* any fragment: more fragments follow, or a non-zero offset */
	__u32 ip_hlen;  /* IPv4 header length, options included */
	__u32 ip_tot_len; /* IPv4 total length */
};

enum parse_status {
	PARSE_IPV4 = 0,
	PARSE_ARP,
	PARSE_IPV6,
	PARSE_OTHER_L3,
	PARSE_MALFORMED,
};

static __always_inline int has_ports(__u32 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

static __always_inline enum parse_status parse_packet(struct __sk_buff *skb, struct packet *p)
{
	/* TC may see a non-linear skb: make the headers readable directly. */
	__u32 want = skb->len < PARSE_PULL_LEN ? skb->len : PARSE_PULL_LEN;
	if (skb->data_end - skb->data < want)
		bpf_skb_pull_data(skb, want);

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return PARSE_MALFORMED;
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return PARSE_ARP;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return PARSE_IPV6;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return PARSE_OTHER_L3;

	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)ip + IPV4_MIN_HLEN > data_end)
		return PARSE_MALFORMED;
	if (ipv4_version(ip) != IPV4_VERSION)
		return PARSE_MALFORMED;
	__u32 hlen = ipv4_hlen(ip);
	if (hlen < IPV4_MIN_HLEN)
		return PARSE_MALFORMED;
	if ((void *)ip + hlen > data_end)
		return PARSE_MALFORMED;
	if (bpf_ntohs(ip->tot_len) < hlen)
		return PARSE_MALFORMED;

	p->src = bpf_ntohl(ip->saddr);
	p->dst = bpf_ntohl(ip->daddr);
	p->proto = ip->protocol;
	p->sport = 0;
	p->dport = 0;
	p->later_fragment = (bpf_ntohs(ip->frag_off) & IP_OFFSET) != 0;
	p->fragment = (bpf_ntohs(ip->frag_off) & (IP_MF | IP_OFFSET)) != 0;
	p->ip_hlen = hlen;
	p->ip_tot_len = bpf_ntohs(ip->tot_len);
	if (!has_ports(p->proto) || p->later_fragment)
		return PARSE_IPV4;

	/* Unfragmented or first fragment: the L4 header must be there whole
	 * (a first fragment too short for it is the RFC 1858 tiny-fragment trick). */
	void *l4 = (void *)ip + hlen;
	__u32 l4_len = sizeof(struct udphdr);
	if (l4 + sizeof(struct udphdr) > data_end)
		return PARSE_MALFORMED;
	if (p->proto == IPPROTO_TCP) {
		l4_len = sizeof(struct tcphdr);
		if (l4 + sizeof(struct tcphdr) > data_end)
			return PARSE_MALFORMED;
	}
	if (bpf_ntohs(ip->tot_len) < hlen + l4_len)
		return PARSE_MALFORMED;
	struct udphdr *ports = l4; /* source and dest sit at the same offsets in TCP */
	p->sport = bpf_ntohs(ports->source);
	p->dport = bpf_ntohs(ports->dest);
	return PARSE_IPV4;
}

#endif
