// SPDX-License-Identifier: GPL-2.0
/* Test harness for seal_ccm.h: contexts from a syscall program, sealing in a
 * TC program run by BPF_PROG_TEST_RUN, result read back from a map. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define CCM_MAX_PAYLOAD 512 /* the input may carry a tag after a full payload */
#include "seal_ccm.h"

#define SLOT_ECB 0
#define SLOT_CBC 1

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct crypto_slot);
} ccm_contexts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ccm_scratch);
} ccm_work SEC(".maps");

struct setup_args {
	__u8 key[32];
	__u32 key_len;
	__u32 slot;
	__s32 err;
};

SEC("syscall")
int ccm_setup(struct setup_args *args)
{
	struct bpf_crypto_params params = { .type = "skcipher" };
	struct crypto_slot local = {}, *slot;
	struct bpf_crypto_ctx *ctx, *old;
	__u32 key = args->slot;
	int err = 0;

	if (args->key_len != 16 && args->key_len != 24 && args->key_len != 32) {
		args->err = -22;
		return 0;
	}
	if (key == SLOT_ECB)
		__builtin_memcpy(params.algo, "ecb(aes)", sizeof("ecb(aes)"));
	else
		__builtin_memcpy(params.algo, "cbc(aes)", sizeof("cbc(aes)"));
	__builtin_memcpy(params.key, args->key, sizeof(args->key));
	params.key_len = args->key_len;
	ctx = bpf_crypto_ctx_create(&params, sizeof(params), &err);
	if (!ctx) {
		args->err = err;
		return 0;
	}
	if (bpf_map_update_elem(&ccm_contexts, &key, &local, 0)) {
		bpf_crypto_ctx_release(ctx);
		args->err = -2;
		return 0;
	}
	slot = bpf_map_lookup_elem(&ccm_contexts, &key);
	if (!slot) {
		bpf_crypto_ctx_release(ctx);
		args->err = -2;
		return 0;
	}
	old = bpf_kptr_xchg(&slot->ctx, ctx);
	if (old)
		bpf_crypto_ctx_release(old);
	args->err = 0;
	return 0;
}

/* Packet data after a 14-byte pad: nonce[13] | aad_len u8 | aad | payload. */
#define INPUT_OFFSET 14
#define HEADER_LEN (CCM_NONCE_LEN + 1)
#define AAD_BUF 128

static __always_inline int ccm_test(struct __sk_buff *skb, int open)
{
	__u32 zero = 0, ecb_key = SLOT_ECB, cbc_key = SLOT_CBC;
	struct crypto_slot *ecb, *cbc;
	struct ccm_scratch *s;
	__u8 head[HEADER_LEN];
	__u8 aad[AAD_BUF] = {}; /* a power of two, for the masked load below */

	s = bpf_map_lookup_elem(&ccm_work, &zero);
	ecb = bpf_map_lookup_elem(&ccm_contexts, &ecb_key);
	cbc = bpf_map_lookup_elem(&ccm_contexts, &cbc_key);
	if (!s || !ecb || !cbc)
		return TC_ACT_SHOT;
	/* Read each kptr once: every read may see NULL after a concurrent swap. */
	struct bpf_crypto_ctx *ecb_ctx = ecb->ctx, *cbc_ctx = cbc->ctx;
	if (!ecb_ctx || !cbc_ctx)
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, INPUT_OFFSET, head, sizeof(head)))
		return TC_ACT_SHOT;
	__u32 aad_len = head[CCM_NONCE_LEN];
	if (aad_len > CCM_MAX_AAD)
		return TC_ACT_SHOT;
	if (aad_len >= 1 && aad_len <= CCM_MAX_AAD &&
	    /* the mask changes nothing in range; it shows the verifier 1..64 */
	    bpf_skb_load_bytes(skb, INPUT_OFFSET + HEADER_LEN, aad, ((aad_len - 1) & (AAD_BUF - 1)) + 1))
		return TC_ACT_SHOT;
	__s64 len = (__s64)skb->len - INPUT_OFFSET - HEADER_LEN - aad_len;
	if (len < 0 || len > CCM_MAX_PAYLOAD)
		return TC_ACT_SHOT;
	__u32 n = len;
	if (n >= 1 && n <= CCM_MAX_PAYLOAD &&
	    bpf_skb_load_bytes(skb, INPUT_OFFSET + HEADER_LEN + aad_len, CCM_PAYLOAD(s),
			       ((n - 1) & (CCM_MAX_PAYLOAD - 1)) + 1))
		return TC_ACT_SHOT;
	if (open) {
		/* The input is ciphertext || tag: the tag sits right after the ciphertext already. */
		if (n < CCM_TAG_LEN)
			return TC_ACT_SHOT;
		return ccm_open(s, ecb_ctx, cbc_ctx, head, aad, aad_len, n - CCM_TAG_LEN) ? TC_ACT_SHOT : TC_ACT_OK;
	}
	return ccm_seal(s, ecb_ctx, cbc_ctx, head, aad, aad_len, n) ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("tc")
int ccm_seal_test(struct __sk_buff *skb)
{
	return ccm_test(skb, 0);
}

SEC("tc")
int ccm_open_test(struct __sk_buff *skb)
{
	return ccm_test(skb, 1);
}

char LICENSE[] SEC("license") = "GPL";
