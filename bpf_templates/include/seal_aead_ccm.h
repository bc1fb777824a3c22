/* The AES-128-CCM suite (seal_ccm.h) behind the seal_aead.h boundary: two
 * bpf_crypto contexts per key, ecb(aes) and cbc(aes) of the AES driver the
 * data plane was compiled with (so the driver is measured). */
#ifndef SEALNET_SEAL_AEAD_CCM_H
#define SEALNET_SEAL_AEAD_CCM_H

#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include "bits.h"
#include "seal_hdr.h"
#include "seal_crypto.h"
#include "seal_ccm.h"

#ifndef SEAL_AES_DRIVER
#error "SEAL_AES_DRIVER (the kernel's AES implementation, e.g. \"aes-fixed-time\") must be defined"
#endif

#define SEAL_SUITE            SEAL_SUITE_AES_128_CCM
#define SEAL_AEAD_KEY_LEN     CCM_KEY_LEN
#define SEAL_AEAD_MAX_PAYLOAD CCM_MAX_PAYLOAD
#define SEAL_AEAD_MAX_AAD     CCM_MAX_AAD
#define SEAL_AEAD_WIRE_LEN    CCM_WIRE_LEN
#define SEAL_AEAD_MAX_SEQ     (~0ULL) /* the whole 8-byte sequence is in the nonce */
#define SEAL_AEAD_WIRE(s)     ((s)->ccm.wire)
#define SEAL_AEAD_PAYLOAD(s)  CCM_PAYLOAD(&(s)->ccm)
#define SEAL_ALGO(mode)       mode "(" SEAL_AES_DRIVER ")"

_Static_assert(CCM_TAG_LEN == SEAL_TAG_LEN, "the format's tag is CCM's");
_Static_assert(CCM_WIRE_HEAD == SEAL_HDR_LEN, "the seal header fills the head of wire[]");
_Static_assert(CCM_NONCE_LEN == SEAL_NONCE_LEN, "the header's nonce is CCM's");

struct seal_aead_key {
	struct bpf_crypto_ctx __kptr *ecb; /* CTR keystream */
	struct bpf_crypto_ctx __kptr *cbc; /* CBC-MAC */
};

struct seal_aead_scratch {
	struct ccm_scratch ccm;
};

static __always_inline struct bpf_crypto_ctx *seal_ccm_ctx(const char *algo, __u32 algo_len, const __u8 *key,
							   int *err)
{
	struct bpf_crypto_params params = { .type = "skcipher", .key_len = CCM_KEY_LEN };
	struct bpf_crypto_ctx *ctx;

	__builtin_memcpy(params.algo, algo, algo_len);
	__builtin_memcpy(params.key, key, CCM_KEY_LEN);
	ctx = bpf_crypto_ctx_create(&params, sizeof(params), err);
	wipe((volatile __u8 *)params.key, CCM_KEY_LEN);
	return ctx;
}

static __always_inline void seal_ccm_release(struct bpf_crypto_ctx *ctx)
{
	if (ctx)
		bpf_crypto_ctx_release(ctx);
}

/* Replace the slot's contexts by the key's (or by none, to remove it). On an
 * error the slot keeps its old contexts: the caller has marked it unusable. */
static __always_inline int seal_aead_set_key(struct seal_aead_key *slot, const __u8 *key, int remove)
{
	static const char ecb_algo[] = SEAL_ALGO("ecb");
	static const char cbc_algo[] = SEAL_ALGO("cbc");
	struct bpf_crypto_ctx *ecb = NULL, *cbc = NULL;
	int err = 0;

	_Static_assert(sizeof(ecb_algo) <= sizeof(((struct bpf_crypto_params *)0)->algo) &&
		       sizeof(cbc_algo) <= sizeof(((struct bpf_crypto_params *)0)->algo), "algorithm names fit");
	if (!remove) {
		ecb = seal_ccm_ctx(ecb_algo, sizeof(ecb_algo), key, &err);
		if (ecb)
			cbc = seal_ccm_ctx(cbc_algo, sizeof(cbc_algo), key, &err);
		if (!ecb || !cbc) {
			seal_ccm_release(ecb);
			seal_ccm_release(cbc);
			return err ? err : -EINVAL;
		}
	}
	seal_ccm_release(bpf_kptr_xchg(&slot->ecb, ecb));
	seal_ccm_release(bpf_kptr_xchg(&slot->cbc, cbc));
	return 0;
}

static __always_inline int seal_aead_seal(struct seal_aead_scratch *s, struct seal_aead_key *key, const __u8 *nonce,
					  const __u8 *aad, __u32 aad_len, __u32 len)
{
	struct bpf_crypto_ctx *ecb = key->ecb, *cbc = key->cbc; /* each read once: may turn NULL */

	if (!ecb || !cbc)
		return -ENOKEY;
	return ccm_seal(&s->ccm, ecb, cbc, nonce, aad, aad_len, len);
}

static __always_inline int seal_aead_open(struct seal_aead_scratch *s, struct seal_aead_key *key, const __u8 *nonce,
					  const __u8 *aad, __u32 aad_len, __u32 len)
{
	struct bpf_crypto_ctx *ecb = key->ecb, *cbc = key->cbc;

	if (!ecb || !cbc)
		return -ENOKEY;
	return ccm_open(&s->ccm, ecb, cbc, nonce, aad, aad_len, len);
}

#endif
