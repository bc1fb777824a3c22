/* Checksums of a packet whose L4 payload is replaced by one of another length:
 * the IPv4 header checksum (total length), the UDP length, and the L4
 * checksum (pseudo-header length and payload sum). */
#ifndef SEALNET_CSUM_H
#define SEALNET_CSUM_H

#include "kernel_types.h"
#include "ipv4.h"
#include "l4.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* old_sum and new_sum: 32-bit one's complement sums of the old and new payload.
 * Data changes go in without BPF_F_PSEUDO_HDR (a CHECKSUM_PARTIAL skb has
 * them summed later by the device), the length in the pseudo-header with it. */
static __always_inline int csum_payload_replaced(struct __sk_buff *skb, const struct l4_layout *l,
						 __u32 old_sum, __u32 new_sum, __u32 new_tot)
{
	__be16 old_l4_be = bpf_htons(l->tot_len - l->hlen), new_l4_be = bpf_htons(new_tot - l->hlen);
	__u64 mangled = l->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (ipv4_set_tot_len(skb, l->tot_len, new_tot))
		return -1;
	if (!l->csum_at)
		return 0;
	if (l->proto == IPPROTO_UDP &&
	    (bpf_skb_store_bytes(skb, l->l4_at + UDP_LEN_OFF, &new_l4_be, sizeof(new_l4_be), 0) ||
	     bpf_l4_csum_replace(skb, l->csum_at, old_l4_be, new_l4_be, mangled | sizeof(new_l4_be))))
		return -1;
	if (bpf_l4_csum_replace(skb, l->csum_at, old_l4_be, new_l4_be, mangled | BPF_F_PSEUDO_HDR | sizeof(new_l4_be)) ||
	    bpf_l4_csum_replace(skb, l->csum_at, old_sum, new_sum, mangled | sizeof(__u32)))
		return -1;
	return 0;
}

#endif
