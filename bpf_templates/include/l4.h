/* Where the L4 header, its checksum and the payload of a parsed IPv4 packet
 * sit in the frame. Lengths come from parse_packet(); only TCP's data offset
 * is read here. */
#ifndef SEALNET_L4_H
#define SEALNET_L4_H

#include "kernel_types.h"
#include "parse.h"
#include <bpf/bpf_helpers.h>

#define TCP_DOFF_OFF offsetof(struct tcphdr, flags) /* data offset: the high nibble of this byte */
#define TCP_CSUM_OFF offsetof(struct tcphdr, check)
#define UDP_LEN_OFF  offsetof(struct udphdr, len)
#define UDP_CSUM_OFF offsetof(struct udphdr, check)
#define TCP_MAX_HLEN 60

struct l4_layout {
	__u32 hlen;       /* IPv4 header */
	__u32 tot_len;    /* IPv4 total length */
	__u32 l4_at;      /* frame offset of the L4 header */
	__u32 l4_len;     /* L4 header: TCP doff*4, UDP 8, else 0 */
	__u32 payload;    /* bytes after the L4 header */
	__u32 payload_at; /* frame offset of those bytes */
	__u32 csum_at;    /* L4 checksum offset in the frame, 0 when there is none */
	__u8 proto;
};

enum l4_status { L4_OK = 0, L4_BAD = 1 };

static __always_inline enum l4_status l4_layout(struct __sk_buff *skb, const struct packet *p, struct l4_layout *l)
{
	__u8 doff;

	l->hlen = p->ip_hlen;
	l->tot_len = p->ip_tot_len;
	l->proto = p->proto;
	l->l4_at = ETH_HLEN + l->hlen;
	l->csum_at = 0;
	l->l4_len = 0;
	if (ETH_HLEN + l->tot_len > skb->len)
		return L4_BAD;
	if (l->proto == IPPROTO_UDP) {
		l->l4_len = sizeof(struct udphdr);
		l->csum_at = l->l4_at + UDP_CSUM_OFF;
	} else if (l->proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, l->l4_at + TCP_DOFF_OFF, &doff, sizeof(doff)))
			return L4_BAD;
		l->l4_len = (doff >> 4) * 4;
		if (l->l4_len < sizeof(struct tcphdr))
			return L4_BAD;
		l->csum_at = l->l4_at + TCP_CSUM_OFF;
	}
	if (l->tot_len < l->hlen + l->l4_len)
		return L4_BAD;
	l->payload = l->tot_len - l->hlen - l->l4_len;
	l->payload_at = l->l4_at + l->l4_len;
	return L4_OK;
}

/* The L4 checksum's offset within the L4 header (0 when there is none in clear). */
static __always_inline __u32 l4_csum_off(__u8 proto)
{
	return proto == IPPROTO_UDP ? UDP_CSUM_OFF : proto == IPPROTO_TCP ? TCP_CSUM_OFF : 0;
}

#endif
