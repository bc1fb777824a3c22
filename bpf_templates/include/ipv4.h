/* IPv4 header facts: lengths, where the fields sit in a frame, rewriting the
 * total length with its checksum. */
#ifndef SEALNET_IPV4_H
#define SEALNET_IPV4_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define IPV4_MIN_HLEN 20
#define IPV4_MAX_HLEN 60
#define IPV4_VERSION  4

/* Frame offsets of the fields the data plane rewrites (Ethernet header first). */
#define IPV4_TOT_LEN_OFF (ETH_HLEN + offsetof(struct iphdr, tot_len))
#define IPV4_CSUM_OFF    (ETH_HLEN + offsetof(struct iphdr, check))

_Static_assert(sizeof(struct iphdr) == IPV4_MIN_HLEN, "struct iphdr is the header without options");

static __always_inline __u32 ipv4_version(const struct iphdr *ip)
{
	return ip->ihl_version >> 4;
}

static __always_inline __u32 ipv4_hlen(const struct iphdr *ip)
{
	return (ip->ihl_version & 0x0F) * 4;
}

/* Write a new total length and fold the change into the header checksum. */
static __always_inline int ipv4_set_tot_len(struct __sk_buff *skb, __u32 old_len, __u32 new_len)
{
	__be16 old_be = bpf_htons(old_len), new_be = bpf_htons(new_len);

	if (bpf_skb_store_bytes(skb, IPV4_TOT_LEN_OFF, &new_be, sizeof(new_be), 0))
		return -1;
	return bpf_l3_csum_replace(skb, IPV4_CSUM_OFF, old_be, new_be, sizeof(new_be)) ? -1 : 0;
}

#endif
