/* Ingress: verify and open a packet of a `seal` rule, or say why it is dropped. */
#ifndef SEALNET_SEAL_INGRESS_H
#define SEALNET_SEAL_INGRESS_H

#include <linux/errno.h>
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "verdicts.h"
#include "parse.h"
#include "l4.h"
#include "csum.h"
#include "seal_hdr.h"
#include "seal_aead.h"
#include "seal_maps.h"
#include "seal_buffer.h"
#include "seal_replay.h"

/* Checks in the order docs/wire-format.md gives them. Returns the verdict. */
static __always_inline enum sealnet_verdict seal_ingress(struct __sk_buff *skb, const struct packet *p,
							 __u32 src_domain, __u32 dst_domain)
{
	struct seal_hdr head;
	struct l4_layout l;
	__u32 pair;

	if (l4_layout(skb, p, &l) != L4_OK)
		return V_SEAL_MALFORMED_DROP;
	if (l.payload < SEAL_OVERHEAD || bpf_skb_load_bytes(skb, l.payload_at, &head, sizeof(head)) ||
	    head.version != SEAL_VERSION)
		return V_SEAL_PLAINTEXT_DROP;
	/* Another suite than this policy's, or a sequence that is no nonce of it: never opened. */
	if (p->fragment || head.suite != SEAL_SUITE || l.payload > SEAL_WIRE_MAX ||
	    bpf_be64_to_cpu(head.seq) > SEAL_AEAD_MAX_SEQ)
		return V_SEAL_MALFORMED_DROP;

	pair = seal_pair(src_domain, dst_domain);
	struct seal_key *key = seal_key_of(pair, head.epoch);
	if (!key)
		return V_SEAL_UNKNOWN_KEY_DROP;

	__u64 seq = bpf_be64_to_cpu(head.seq);
	__u64 stream_id = seal_stream_word(bpf_ntohl(head.sender), pair, head.epoch, head.cpu);
	if (!seal_replay_check(stream_id, seq, 0))
		return V_SEAL_REPLAY_DROP;

	struct seal_scratch *s = seal_scratch_of(DIR_INGRESS);
	if (!s)
		return V_INTERNAL_DROP;
	__u8 *wire = SEAL_AEAD_WIRE(&s->aead);
	__u64 wire_len = l.payload;
	barrier_var(wire_len);
	if (wire_len < SEAL_OVERHEAD || wire_len > SEAL_WIRE_MAX)
		return V_SEAL_MALFORMED_DROP;
	if (bpf_skb_load_bytes(skb, l.payload_at, wire, wire_len))
		return V_SEAL_MALFORMED_DROP;
	__u32 n = wire_len - SEAL_OVERHEAD;
	__s64 old_sum = seal_wire_sum(s, 0, wire_len);
	__u32 aad_len = seal_build_aad(skb, s, &l, p);
	if (!aad_len || old_sum < 0)
		return V_INTERNAL_DROP;
	int err = seal_aead_open(&s->aead, &key->aead, &wire[SEAL_NONCE_OFF], s->aad, aad_len, n);
	if (err == -EBADMSG)
		return V_SEAL_BAD_TAG_DROP;
	if (err == -ENOKEY)
		return V_SEAL_UNKNOWN_KEY_DROP; /* the key was removed under us */
	if (err)
		return V_INTERNAL_DROP;
	if (!seal_replay_check(stream_id, seq, 1))
		return V_SEAL_REPLAY_DROP;

	__s64 new_sum = seal_wire_sum(s, 1, n);
	if (new_sum < 0)
		return V_INTERNAL_DROP;
	__u64 plain_len = n;
	barrier_var(plain_len);
	if (plain_len > SEAL_AEAD_MAX_PAYLOAD)
		return V_INTERNAL_DROP;
	if ((plain_len && bpf_skb_store_bytes(skb, l.payload_at, SEAL_AEAD_PAYLOAD(&s->aead), plain_len, 0)) ||
	    bpf_skb_change_tail(skb, ETH_HLEN + l.tot_len - SEAL_OVERHEAD, 0) ||
	    csum_payload_replaced(skb, &l, old_sum, new_sum, l.tot_len - SEAL_OVERHEAD))
		return V_INTERNAL_DROP;
	return V_SEAL_SENT;
}

#endif
