/* Egress: seal a packet of a `seal` rule (docs/wire-format.md), or say why not. */
#ifndef SEALNET_SEAL_EGRESS_H
#define SEALNET_SEAL_EGRESS_H

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

/* Seal in place: the payload becomes seal header | ciphertext | tag. Returns the verdict. */
static __always_inline enum sealnet_verdict seal_egress(struct __sk_buff *skb, const struct packet *p,
							__u32 src_domain, __u32 dst_domain)
{
	__u32 zero = 0, pair, epoch, mtu_len = 0;
	struct l4_layout l;

	pair = seal_pair(src_domain, dst_domain);
	if (!pair)
		return V_SEAL_NO_KEY_DROP;
	struct seal_tx *tx = bpf_map_lookup_elem(&seal_tx, &pair);
	if (!tx || !tx->active)
		return V_SEAL_NO_KEY_DROP;
	epoch = tx->epoch & SEAL_EPOCH_MASK;
	struct seal_key *key = seal_key_of(pair, epoch);
	if (!key)
		return V_SEAL_NO_KEY_DROP;
	struct seal_config *cfg = bpf_map_lookup_elem(&seal_config, &zero);
	if (!cfg || !cfg->sender)
		return V_SEAL_NO_KEY_DROP;
	__u32 sender = cfg->sender;

	if (l4_layout(skb, p, &l) != L4_OK)
		return V_SEAL_MALFORMED_DROP;
	if (p->fragment)
		return V_SEAL_TOO_BIG_DROP; /* the datagram outgrew the route MTU: never sealed in pieces */
	/* A GSO super-packet would be cut into segments after TC: never seal one. */
	if (skb->gso_size || l.payload > SEAL_AEAD_MAX_PAYLOAD || bpf_check_mtu(skb, 0, &mtu_len, SEAL_OVERHEAD, 0))
		return V_SEAL_TOO_BIG_DROP;

	__u32 cpu = bpf_get_smp_processor_id();
	__u64 *counter = bpf_map_lookup_elem(&seal_seq, &zero);
	struct seal_scratch *s = seal_scratch_of(DIR_EGRESS);
	if (cpu >= SEAL_MAX_CPUS || !counter || !s)
		return V_INTERNAL_DROP;
	/* The count never leaves the generation the agent reserved for this load
	 * (docs/wire-format.md, "Nonce uniqueness"): near its end nothing is sealed
	 * until the agent moves the counter to a fresh generation. Checked before
	 * the add too, so a drained counter does not creep into the next generation. */
	if ((*counter & SEAL_SEQ_COUNT_MASK) >= SEAL_SEQ_COUNT_END)
		return V_SEAL_NO_KEY_DROP;
	/* Atomic even on a per-CPU value: a nested run on this CPU still gets its own. */
	__u64 seq = __sync_fetch_and_add(counter, 1) + 1;
	if ((seq & SEAL_SEQ_COUNT_MASK) >= SEAL_SEQ_COUNT_END)
		return V_SEAL_NO_KEY_DROP;
	if (seq > SEAL_AEAD_MAX_SEQ)
		return V_SEAL_NO_KEY_DROP; /* the stream's nonces are spent: never reuse one */

	__u8 *wire = SEAL_AEAD_WIRE(&s->aead);
	struct seal_hdr *hdr = (struct seal_hdr *)wire;
	hdr->version = SEAL_VERSION;
	hdr->suite = SEAL_SUITE;
	hdr->epoch = epoch;
	hdr->sender = bpf_htonl(sender);
	hdr->cpu = cpu;
	hdr->seq = bpf_cpu_to_be64(seq);

	__u64 n = l.payload;
	barrier_var(n);
	if (n > SEAL_AEAD_MAX_PAYLOAD)
		return V_SEAL_TOO_BIG_DROP;
	if (n && bpf_skb_load_bytes(skb, l.payload_at, SEAL_AEAD_PAYLOAD(&s->aead), n))
		return V_SEAL_MALFORMED_DROP;
	__s64 old_sum = seal_wire_sum(s, 1, n);

	/* The receiver sees the UDP length of the sealed packet: authenticate that one. */
	__u32 aad_len = seal_build_aad(skb, s, &l, p);
	if (!aad_len || old_sum < 0)
		return V_INTERNAL_DROP;
	if (l.proto == IPPROTO_UDP) {
		__be16 ulen = bpf_htons(l.tot_len - l.hlen + SEAL_OVERHEAD);
		__builtin_memcpy(&s->aad[SEAL_AAD_FIXED + UDP_LEN_OFF], &ulen, sizeof(ulen));
	}
	int err = seal_aead_seal(&s->aead, &key->aead, &wire[SEAL_NONCE_OFF], s->aad, aad_len, n);
	if (err == -ENOKEY)
		return V_SEAL_NO_KEY_DROP; /* the key was removed under us */
	if (err)
		return V_INTERNAL_DROP;
	__s64 new_sum = seal_wire_sum(s, 0, n + SEAL_OVERHEAD);
	if (new_sum < 0)
		return V_INTERNAL_DROP;

	__u64 wire_len = n + SEAL_OVERHEAD;
	barrier_var(wire_len);
	if (wire_len > SEAL_WIRE_MAX)
		return V_INTERNAL_DROP;
	if (bpf_skb_change_tail(skb, ETH_HLEN + l.tot_len + SEAL_OVERHEAD, 0) ||
	    bpf_skb_store_bytes(skb, l.payload_at, wire, wire_len, 0) ||
	    csum_payload_replaced(skb, &l, old_sum, new_sum, l.tot_len + SEAL_OVERHEAD))
		return V_INTERNAL_DROP;
	return V_SEAL_SENT;
}

#endif
