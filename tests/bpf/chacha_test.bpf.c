// SPDX-License-Identifier: GPL-2.0
/* Test harness for chacha20.h, poly1305.h and chacha20_poly1305.h: the key
 * in a map written by the test, the input in a packet run by
 * BPF_PROG_TEST_RUN, the result read back from the scratch map. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "chacha20_poly1305.h"

struct cp_test_key {
	__u8 key[CP_KEY_LEN];
} __attribute__((aligned(8)));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cp_test_key);
} cp_key SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cp_scratch);
} cp_work SEC(".maps");

/* Packet data after a 14-byte pad: nonce[12] | aad_len u8 | aad | payload.
 * The payload of an open is ciphertext || tag. */
#define INPUT_OFFSET 14
#define HEADER_LEN   (CP_NONCE_LEN + 1)

enum cp_test_op { OP_SEAL, OP_OPEN, OP_CHACHA, OP_POLY };

static __always_inline int cp_test(struct __sk_buff *skb, enum cp_test_op op)
{
	__u32 zero = 0;
	__u8 head[HEADER_LEN];
	struct cp_scratch *s = bpf_map_lookup_elem(&cp_work, &zero);
	struct cp_test_key *key = bpf_map_lookup_elem(&cp_key, &zero);

	if (!s || !key)
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, INPUT_OFFSET, head, sizeof(head)))
		return TC_ACT_SHOT;
	__u32 aad_len = head[CP_NONCE_LEN];
	if (aad_len > CP_MAX_AAD)
		return TC_ACT_SHOT;
	if (aad_len >= 1 && aad_len <= CP_MAX_AAD &&
	    /* the mask changes nothing in range; it shows the verifier the bound */
	    bpf_skb_load_bytes(skb, INPUT_OFFSET + HEADER_LEN, s->aad, ((aad_len - 1) & (CP_AAD_BUF - 1)) + 1))
		return TC_ACT_SHOT;
	__s64 len = (__s64)skb->len - INPUT_OFFSET - HEADER_LEN - aad_len;
	if (len < 0 || len > CP_MAX_PAYLOAD + CP_TAG_LEN)
		return TC_ACT_SHOT;
	__u64 n = len;
	barrier_var(n); /* the verifier must see the bound checked on the register passed */
	if (n > CP_MAX_PAYLOAD + CP_TAG_LEN)
		return TC_ACT_SHOT;
	if (n && bpf_skb_load_bytes(skb, INPUT_OFFSET + HEADER_LEN + aad_len, CP_PAYLOAD(s), n))
		return TC_ACT_SHOT;
	struct cp_nonce nonce = { { cp_le32(head[0], head[1], head[2], head[3]), cp_le32(head[4], head[5], head[6], head[7]),
				    cp_le32(head[8], head[9], head[10], head[11]) } };
	switch (op) {
	case OP_SEAL:
		return cp_seal(s, (const __u32 *)key->key, nonce, aad_len, n) ? TC_ACT_SHOT : TC_ACT_OK;
	case OP_OPEN:
		if (n < CP_TAG_LEN)
			return TC_ACT_SHOT;
		return cp_open(s, (const __u32 *)key->key, nonce, aad_len, n - CP_TAG_LEN) ? TC_ACT_SHOT
											 : TC_ACT_OK;
	case OP_CHACHA: /* the RFC's ChaCha20 with counter 1 */
		if (n > CP_MAX_PAYLOAD)
			return TC_ACT_SHOT;
		cp_start(s, (const __u32 *)key->key, nonce);
		cp_crypt(s, n);
		return TC_ACT_OK;
	case OP_POLY: { /* Poly1305 with the map's key over whole blocks of payload, tag to s->tag */
		struct cp_loop loop = { .s = s, .from = CP_POLY_WIRE };
		if (n % POLY1305_BLOCK || n > CP_MAX_PAYLOAD)
			return TC_ACT_SHOT;
		for (__u32 i = 0; i < 8; i++)
			s->block0[i] = chacha20_le32(((const __u32 *)key->key)[i]);
		poly1305_init(&s->poly, s->block0);
		cp_poly(&loop, n / POLY1305_BLOCK);
		poly1305_finish(&s->poly, s->tag);
		return TC_ACT_OK;
	}
	}
	return TC_ACT_SHOT;
}

SEC("tc")
int cp_seal_test(struct __sk_buff *skb)
{
	return cp_test(skb, OP_SEAL);
}

SEC("tc")
int cp_open_test(struct __sk_buff *skb)
{
	return cp_test(skb, OP_OPEN);
}

SEC("tc")
int cp_chacha_test(struct __sk_buff *skb)
{
	return cp_test(skb, OP_CHACHA);
}

SEC("tc")
int cp_poly_test(struct __sk_buff *skb)
{
	return cp_test(skb, OP_POLY);
}

char LICENSE[] SEC("license") = "GPL";
