/* AES-CCM (RFC 3610) with a 16-byte tag and a 13-byte nonce (L = 2), built
 * from the kernel's ecb(aes) (CTR keystream) and cbc(aes) (CBC-MAC) through
 * bpf_crypto, because ctr(aes) and ccm(aes) cannot be created from BPF.
 *
 * The caller provides a ccm_scratch in map memory (dynptrs need it) and two
 * contexts for the same key: one ecb(aes), one cbc(aes). Lengths are bounded
 * by CCM_MAX_AAD and CCM_MAX_PAYLOAD; every loop is bounded by them. */
#ifndef SEAL_CCM_H
#define SEAL_CCM_H

#include "seal_crypto.h"

#define AES_BLOCK 16
#define CCM_TAG_LEN 16
#define CCM_NONCE_LEN 13
#ifndef CCM_MAX_PAYLOAD
#define CCM_MAX_PAYLOAD 1472
#endif
#define CCM_MAX_AAD 64
#define CCM_PAYLOAD_BLOCKS ((CCM_MAX_PAYLOAD + AES_BLOCK - 1) / AES_BLOCK)
/* B0, the encoded associated data (2-byte length + data, padded), the payload (padded). */
#define CCM_MAC_MAX (AES_BLOCK + ((2 + CCM_MAX_AAD + AES_BLOCK - 1) / AES_BLOCK) * AES_BLOCK + \
		     CCM_PAYLOAD_BLOCKS * AES_BLOCK)
#define CCM_CTR_MAX ((CCM_PAYLOAD_BLOCKS + 1) * AES_BLOCK)
#define CCM_FLAGS_ADATA 0x40
#define CCM_FLAGS_M ((CCM_TAG_LEN - 2) / 2 << 3)
#define CCM_FLAGS_L (2 - 1)

struct ccm_scratch {
	__u8 mac_in[CCM_MAC_MAX];
	__u8 mac_out[CCM_MAC_MAX];
	__u8 ctr[CCM_CTR_MAX];
	__u8 keystream[CCM_CTR_MAX];
	__u8 zero_iv[AES_BLOCK];
	/* plaintext in, ciphertext out; one spare block so padding needs no bounds branch */
	__u8 payload[CCM_MAX_PAYLOAD + AES_BLOCK];
	__u8 tag[CCM_TAG_LEN];
};

/* All ones when i < n, else zero: loops stay branch-free, so the verifier
 * walks each loop once instead of once per possible length. */
static __always_inline __u64 ccm_mask(__u32 i, __u32 n)
{
	return (__u64)(((__s64)i - (__s64)n) >> 63);
}

/* Seal s->payload[0..len) in place and write s->tag. `aad` holds aad_len
 * bytes (at most CCM_MAX_AAD). Returns 0 or a negative errno. */
static __always_inline int ccm_seal(struct ccm_scratch *s, struct bpf_crypto_ctx *ecb,
				    struct bpf_crypto_ctx *cbc, const __u8 *nonce,
				    const __u8 aad[CCM_MAX_AAD], __u32 aad_len, __u32 len)
{
	struct bpf_dynptr src, dst, iv;
	__u32 i, mac_len, blocks;
	int err;

	if (aad_len > CCM_MAX_AAD || len > CCM_MAX_PAYLOAD)
		return -22;
	blocks = (len + AES_BLOCK - 1) / AES_BLOCK;

	/* B0 = flags | nonce | length */
	s->mac_in[0] = (aad_len ? CCM_FLAGS_ADATA : 0) | CCM_FLAGS_M | CCM_FLAGS_L;
	for (i = 0; i < CCM_NONCE_LEN; i++)
		s->mac_in[1 + i] = nonce[i];
	s->mac_in[14] = len >> 8;
	s->mac_in[15] = len & 0xff;

	/* Associated data: 2-byte length, the bytes, zero padding. */
	s->mac_in[AES_BLOCK] = aad_len >> 8;
	s->mac_in[AES_BLOCK + 1] = aad_len & 0xff;
	for (i = 0; i < CCM_MAX_AAD; i++)
		s->mac_in[AES_BLOCK + 2 + i] = aad[i] & (__u8)ccm_mask(i, aad_len);
	for (i = AES_BLOCK + 2 + CCM_MAX_AAD; i < CCM_MAC_MAX - CCM_PAYLOAD_BLOCKS * AES_BLOCK; i++)
		s->mac_in[i] = 0;
	mac_len = AES_BLOCK + (aad_len ? ((2 + aad_len + AES_BLOCK - 1) / AES_BLOCK) * AES_BLOCK : 0);

	/* The payload, zero padded to whole blocks, after the associated data. */
	for (i = 0; i < AES_BLOCK; i++)
		s->payload[len + i] = 0;
	for (i = 0; i < CCM_PAYLOAD_BLOCKS; i++) {
		__u32 at = mac_len + i * AES_BLOCK;
		if (at > CCM_MAC_MAX - AES_BLOCK)
			break;
		__u64 m = ccm_mask(i, blocks);
		__u64 *from = (__u64 *)&s->payload[i * AES_BLOCK];
		__u64 *to = (__u64 *)&s->mac_in[at];
		to[0] = from[0] & m;
		to[1] = from[1] & m;
	}
	mac_len += blocks * AES_BLOCK;
	if (mac_len > CCM_MAC_MAX)
		return -22;

	/* CBC-MAC: the last block of CBC with a zero IV. */
	for (i = 0; i < AES_BLOCK; i++)
		s->zero_iv[i] = 0;
	bpf_dynptr_from_mem(s->mac_in, mac_len, 0, &src);
	bpf_dynptr_from_mem(s->mac_out, mac_len, 0, &dst);
	bpf_dynptr_from_mem(s->zero_iv, AES_BLOCK, 0, &iv);
	err = bpf_crypto_encrypt(cbc, &src, &dst, &iv);
	if (err)
		return err;

	/* Counter blocks A_0 .. A_n (all of them: cheaper than a bound), then E(A_i). */
	for (i = 0; i <= CCM_PAYLOAD_BLOCKS; i++) {
		__u8 *a = &s->ctr[i * AES_BLOCK];
		a[0] = CCM_FLAGS_L;
		for (__u32 j = 0; j < CCM_NONCE_LEN; j++)
			a[1 + j] = nonce[j];
		a[14] = i >> 8;
		a[15] = i & 0xff;
	}
	__u32 ctr_len = (blocks + 1) * AES_BLOCK;
	if (ctr_len > CCM_CTR_MAX)
		return -22;
	bpf_dynptr_from_mem(s->ctr, ctr_len, 0, &src);
	bpf_dynptr_from_mem(s->keystream, ctr_len, 0, &dst);
	err = bpf_crypto_encrypt(ecb, &src, &dst, NULL);
	if (err)
		return err;

	/* C = P xor S_1.., whole blocks (bytes past len are padding nobody reads). */
	for (i = 0; i < CCM_PAYLOAD_BLOCKS; i++) {
		__u64 m = ccm_mask(i, blocks);
		__u64 *p = (__u64 *)&s->payload[i * AES_BLOCK];
		__u64 *k = (__u64 *)&s->keystream[(i + 1) * AES_BLOCK];
		p[0] ^= k[0] & m;
		p[1] ^= k[1] & m;
	}
	/* U = T xor S_0, T the last CBC block. */
	__u32 last = mac_len - AES_BLOCK;
	if (last > CCM_MAC_MAX - AES_BLOCK)
		return -22;
	for (i = 0; i < CCM_TAG_LEN; i++)
		s->tag[i] = s->mac_out[last + i] ^ s->keystream[i];
	return 0;
}

#endif /* SEAL_CCM_H */
