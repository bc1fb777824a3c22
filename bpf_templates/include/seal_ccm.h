/* AES-CCM (RFC 3610) with a 16-byte tag and a 13-byte nonce (L = 2), built
 * from the kernel's ecb(aes) (CTR keystream) and cbc(aes) (CBC-MAC) through
 * bpf_crypto, because ctr(aes) and ccm(aes) cannot be created from BPF.
 *
 * The caller provides a ccm_scratch in map memory (dynptrs need it) and two
 * contexts for the same key: one ecb(aes), one cbc(aes). The payload sits in
 * scratch->wire after CCM_WIRE_HEAD bytes the caller may use for its own
 * header, so header, payload and tag can leave as one contiguous buffer.
 * Lengths are bounded by CCM_MAX_AAD and CCM_MAX_PAYLOAD. The work follows
 * the payload's length: bpf_loop runs over the 16-byte blocks present (the
 * verifier walks each callback once), and AES runs over exactly those. */
#ifndef SEAL_CCM_H
#define SEAL_CCM_H

#include <linux/errno.h>
#include "bits.h"
#include "seal_crypto.h"

#define AES_BLOCK 16
#define CCM_KEY_LEN 16 /* AES-128 */
#define CCM_TAG_LEN 16
#define CCM_NONCE_LEN 13
#ifndef CCM_MAX_PAYLOAD
#define CCM_MAX_PAYLOAD 1472
#endif
#define CCM_MAX_AAD 96
#define CCM_WIRE_HEAD 16
/* A power of two, so a length masked with CCM_WIRE_LEN - 1 stays inside wire[]. */
#define CCM_WIRE_LEN 2048
#define CCM_PAYLOAD_BLOCKS ((CCM_MAX_PAYLOAD + AES_BLOCK - 1) / AES_BLOCK)
/* B0, the encoded associated data (2-byte length + data, padded), the payload (padded). */
#define CCM_AAD_AREA (((2 + CCM_MAX_AAD + AES_BLOCK - 1) / AES_BLOCK) * AES_BLOCK)
#define CCM_MAC_MAX (AES_BLOCK + CCM_AAD_AREA + CCM_PAYLOAD_BLOCKS * AES_BLOCK)
#define CCM_CTR_MAX ((CCM_PAYLOAD_BLOCKS + 1) * AES_BLOCK)
#define CCM_FLAGS_ADATA 0x40
#define CCM_FLAGS_M ((CCM_TAG_LEN - 2) / 2 << 3)
#define CCM_FLAGS_L (2 - 1)

_Static_assert(CCM_WIRE_HEAD + CCM_PAYLOAD_BLOCKS * AES_BLOCK + 2 * AES_BLOCK <= CCM_WIRE_LEN,
	       "wire[] holds the header, whole payload blocks, the tag and padding");

struct ccm_scratch {
	__u8 mac_in[CCM_MAC_MAX];
	__u8 mac_out[CCM_MAC_MAX];
	__u8 ctr[CCM_CTR_MAX];
	__u8 keystream[CCM_CTR_MAX];
	__u8 zero_iv[AES_BLOCK];
	__u8 tag[CCM_TAG_LEN];
	/* caller's header | payload (plaintext or ciphertext, in place) | tag | padding */
	__u8 wire[CCM_WIRE_LEN];
};

#define CCM_PAYLOAD(s) (&(s)->wire[CCM_WIRE_HEAD])

/* barrier_var() (libbpf) hides a value from clang's range analysis: it
 * would otherwise drop a bound check it can prove redundant, or check a copy,
 * and the verifier, which cannot see that, needs it on the register used. */

static __always_inline __u64 ccm_blocks(__u32 len)
{
	return ((__u64)len + AES_BLOCK - 1) / AES_BLOCK;
}

/* The bpf_loop callbacks' context, on the caller's stack. */
struct ccm_loop {
	struct ccm_scratch *s;
	__u64 mac_at;   /* mac_in offset of the payload's first block */
	__u64 ctr0[2];  /* A_i without its counter: flags | nonce | 0 0 */
};

/* mac_in[mac_at + 16 i ..] = payload block i (zero padded past the length). */
static int ccm_mac_block(__u32 i, void *data)
{
	struct ccm_loop *l = data;
	struct ccm_scratch *s = l->s;
	__u64 to = l->mac_at + (__u64)i * AES_BLOCK, from = CCM_WIRE_HEAD + (__u64)i * AES_BLOCK;

	barrier_var(to);
	barrier_var(from);
	if (to > CCM_MAC_MAX - AES_BLOCK || from > CCM_WIRE_LEN - AES_BLOCK)
		return 1;
	__u64 *d = (__u64 *)&s->mac_in[to];
	const __u64 *p = (const __u64 *)&s->wire[from];
	d[0] = p[0];
	d[1] = p[1];
	return 0;
}

/* ctr[16 i ..] = A_i = flags | nonce | i (2 bytes, big endian). */
static int ccm_ctr_block(__u32 i, void *data)
{
	struct ccm_loop *l = data;
	struct ccm_scratch *s = l->s;
	__u64 at = (__u64)i * AES_BLOCK;

	barrier_var(at);
	if (at > CCM_CTR_MAX - AES_BLOCK)
		return 1;
	__u64 *a = (__u64 *)&s->ctr[at];
	a[0] = l->ctr0[0];
	a[1] = l->ctr0[1];
	s->ctr[at + AES_BLOCK - 2] = i >> 8;
	s->ctr[at + AES_BLOCK - 1] = i & 0xff;
	return 0;
}

/* payload block i ^= S_(i+1). */
static int ccm_xor_block(__u32 i, void *data)
{
	struct ccm_scratch *s = ((struct ccm_loop *)data)->s;
	__u64 p_at = CCM_WIRE_HEAD + (__u64)i * AES_BLOCK, k_at = ((__u64)i + 1) * AES_BLOCK;

	barrier_var(p_at);
	barrier_var(k_at);
	if (p_at > CCM_WIRE_LEN - AES_BLOCK || k_at > CCM_CTR_MAX - AES_BLOCK)
		return 1;
	__u64 *p = (__u64 *)&s->wire[p_at];
	const __u64 *k = (const __u64 *)&s->keystream[k_at];
	p[0] ^= k[0];
	p[1] ^= k[1];
	return 0;
}

/* Zero the bytes after the payload up to the next block and beyond, so
 * padding and checksums read zeros. */
static __always_inline void ccm_zero_tail(struct ccm_scratch *s, __u32 len)
{
	for (__u32 i = 0; i < AES_BLOCK; i++)
		s->wire[(CCM_WIRE_HEAD + len + i) & (CCM_WIRE_LEN - 1)] = 0;
}

/* CBC-MAC over B0 | encoded AAD | plaintext payload (zero padded past len).
 * T is left in mac_out at *last. */
static __always_inline int ccm_cbc_mac(struct ccm_scratch *s, struct bpf_crypto_ctx *cbc, const __u8 *nonce,
				       const __u8 aad[CCM_MAX_AAD], __u32 aad_len, __u32 len, __u64 *last)
{
	struct bpf_dynptr src, dst, iv;
	__u64 i, mac_len, blocks = ccm_blocks(len);
	int err;

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
		s->mac_in[AES_BLOCK + 2 + i] = aad[i] & (__u8)mask_lt(i, aad_len);
	for (i = AES_BLOCK + 2 + CCM_MAX_AAD; i < AES_BLOCK + CCM_AAD_AREA; i++)
		s->mac_in[i] = 0;
	mac_len = AES_BLOCK + (aad_len ? ((2 + aad_len + AES_BLOCK - 1) / AES_BLOCK) * AES_BLOCK : 0);
	/* Bounded once here, so the loop below needs no exit the verifier would follow. */
	if (mac_len > AES_BLOCK + CCM_AAD_AREA)
		return -EINVAL;

	/* The payload, zero padded to whole blocks, after the associated data. */
	struct ccm_loop loop = { .s = s, .mac_at = mac_len };
	bpf_loop(blocks, ccm_mac_block, &loop, 0);
	mac_len += blocks * AES_BLOCK;
	barrier_var(mac_len);
	if (mac_len > CCM_MAC_MAX || mac_len < AES_BLOCK)
		return -EINVAL;

	/* CBC-MAC: the last block of CBC with a zero IV. */
	for (i = 0; i < AES_BLOCK; i++)
		s->zero_iv[i] = 0;
	bpf_dynptr_from_mem(s->mac_in, mac_len, 0, &src);
	bpf_dynptr_from_mem(s->mac_out, mac_len, 0, &dst);
	bpf_dynptr_from_mem(s->zero_iv, AES_BLOCK, 0, &iv);
	err = bpf_crypto_encrypt(cbc, &src, &dst, &iv);
	if (err)
		return err;
	*last = mac_len - AES_BLOCK;
	return 0;
}

/* keystream = E(A_0) | E(A_1) | ... | E(A_blocks). */
static __always_inline int ccm_keystream(struct ccm_scratch *s, struct bpf_crypto_ctx *ecb, const __u8 *nonce,
					 __u32 len)
{
	struct bpf_dynptr src, dst;
	struct ccm_loop loop = { .s = s };
	__u8 *a0 = (__u8 *)loop.ctr0;

	/* A_0 .. A_blocks: the blocks present and A_0 for the tag. */
	a0[0] = CCM_FLAGS_L;
	for (__u32 j = 0; j < CCM_NONCE_LEN; j++)
		a0[1 + j] = nonce[j];
	bpf_loop(ccm_blocks(len) + 1, ccm_ctr_block, &loop, 0);
	/* 64-bit, so the register checked is the register passed (no 32-bit copy). */
	__u64 ctr_len = (ccm_blocks(len) + 1) * AES_BLOCK;
	barrier_var(ctr_len);
	if (ctr_len > CCM_CTR_MAX)
		return -EINVAL;
	bpf_dynptr_from_mem(s->ctr, ctr_len, 0, &src);
	bpf_dynptr_from_mem(s->keystream, ctr_len, 0, &dst);
	return bpf_crypto_encrypt(ecb, &src, &dst, NULL);
}

/* payload ^= S_1 | S_2 | ..., the blocks present (bytes past len are padding). */
static __always_inline void ccm_xor(struct ccm_scratch *s, __u32 len)
{
	struct ccm_loop loop = { .s = s };

	bpf_loop(ccm_blocks(len), ccm_xor_block, &loop, 0);
}

/* Seal CCM_PAYLOAD(s)[0..len) in place; the tag goes to s->tag and right
 * after the ciphertext in wire[]. Returns 0 or a negative errno. */
static __always_inline int ccm_seal(struct ccm_scratch *s, struct bpf_crypto_ctx *ecb,
				    struct bpf_crypto_ctx *cbc, const __u8 *nonce,
				    const __u8 aad[CCM_MAX_AAD], __u32 aad_len, __u32 len)
{
	__u64 last = 0;
	__u32 i;
	int err;

	if (aad_len > CCM_MAX_AAD || len > CCM_MAX_PAYLOAD)
		return -EINVAL;
	ccm_zero_tail(s, len);
	err = ccm_cbc_mac(s, cbc, nonce, aad, aad_len, len, &last);
	if (err)
		return err;
	err = ccm_keystream(s, ecb, nonce, len);
	if (err)
		return err;
	ccm_xor(s, len);
	if (last > CCM_MAC_MAX - AES_BLOCK)
		return -EINVAL;
	/* U = T xor S_0 */
	for (i = 0; i < CCM_TAG_LEN; i++) {
		__u8 t = s->mac_out[last + i] ^ s->keystream[i];
		s->tag[i] = t;
		s->wire[(CCM_WIRE_HEAD + len + i) & (CCM_WIRE_LEN - 1)] = t;
	}
	return 0;
}

/* Open CCM_PAYLOAD(s)[0..len) in place, the tag read from right after the
 * ciphertext in wire[]. Returns 0 when the tag verifies (compared in
 * constant time), -EBADMSG when it does not, another negative errno on
 * failure. On any failure the payload must not be used. */
static __always_inline int ccm_open(struct ccm_scratch *s, struct bpf_crypto_ctx *ecb,
				    struct bpf_crypto_ctx *cbc, const __u8 *nonce,
				    const __u8 aad[CCM_MAX_AAD], __u32 aad_len, __u32 len)
{
	__u64 last = 0;
	__u32 i;
	__u8 diff = 0;
	int err;

	if (aad_len > CCM_MAX_AAD || len > CCM_MAX_PAYLOAD)
		return -EINVAL;
	for (i = 0; i < CCM_TAG_LEN; i++)
		s->tag[i] = s->wire[(CCM_WIRE_HEAD + len + i) & (CCM_WIRE_LEN - 1)];
	err = ccm_keystream(s, ecb, nonce, len);
	if (err)
		return err;
	ccm_xor(s, len);
	ccm_zero_tail(s, len);
	err = ccm_cbc_mac(s, cbc, nonce, aad, aad_len, len, &last);
	if (err)
		return err;
	if (last > CCM_MAC_MAX - AES_BLOCK)
		return -EINVAL;
	for (i = 0; i < CCM_TAG_LEN; i++)
		diff |= s->tag[i] ^ s->mac_out[last + i] ^ s->keystream[i];
	return diff ? -EBADMSG : 0;
}

#endif /* SEAL_CCM_H */
