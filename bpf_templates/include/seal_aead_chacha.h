/* The ChaCha20-Poly1305 suite (chacha20_poly1305.h, RFC 8439) behind the
 * seal_aead.h boundary: plain eBPF, no kfunc, the 32-byte key kept in the
 * seal_keys slot itself.
 *
 * Nonce (docs/wire-format.md): the header's 13 nonce bytes are sender (4) |
 * cpu (1) | seq (8, big endian); ChaCha20 takes 12, so the top byte of seq
 * is left out and must be 0. A stream whose sequence reaches 2^56 is not
 * sealed any more (-ENOKEY: its nonces are spent), and a packet claiming
 * such a sequence is refused before any key is used. */
#ifndef SEALNET_SEAL_AEAD_CHACHA_H
#define SEALNET_SEAL_AEAD_CHACHA_H

#include <linux/types.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include "bits.h"
#include "seal_hdr.h"
#include "chacha20_poly1305.h"

#define SEAL_SUITE            SEAL_SUITE_CHACHA20_POLY1305
#define SEAL_AEAD_KEY_LEN     CP_KEY_LEN
#define SEAL_AEAD_MAX_PAYLOAD CP_MAX_PAYLOAD
#define SEAL_AEAD_MAX_AAD     CP_MAX_AAD
#define SEAL_AEAD_WIRE_LEN    CP_WIRE_LEN
#define SEAL_AEAD_MAX_SEQ     ((1ULL << 56) - 1) /* the nonce holds seq's low 7 bytes */
#define SEAL_AEAD_WIRE(s)     ((s)->cp.wire)
#define SEAL_AEAD_PAYLOAD(s)  CP_PAYLOAD(&(s)->cp)
/* The nonce byte left out: the top byte of seq. */
#define SEAL_CHACHA_SEQ_TOP   (offsetof(struct seal_hdr, seq) - SEAL_NONCE_OFF)

_Static_assert(CP_TAG_LEN == SEAL_TAG_LEN, "the format's tag is Poly1305's");
_Static_assert(CP_WIRE_HEAD == SEAL_HDR_LEN, "the seal header fills the head of wire[]");
_Static_assert(SEAL_NONCE_LEN - 1 == CP_NONCE_LEN, "the header's nonce less seq's top byte is ChaCha20's");
_Static_assert(CP_MAX_AAD % 8 == 0, "the AAD is copied in 8-byte words");

struct seal_aead_key {
	__u8 key[CP_KEY_LEN] __attribute__((aligned(8)));
	__u32 set; /* 0: no key (removed, or never installed) */
	__u32 reserved;
};

struct seal_aead_scratch {
	struct cp_scratch cp;
};

/* Replace the slot's key by key (or by none, to remove it). */
static __always_inline int seal_aead_set_key(struct seal_aead_key *slot, const __u8 *key, int remove)
{
	slot->set = 0;
	if (remove)
		wipe((volatile __u8 *)slot->key, CP_KEY_LEN);
	else /* fixed offsets from the base: the key may be a syscall program's context */
		__builtin_memcpy(slot->key, key, CP_KEY_LEN);
	slot->set = !remove;
	return 0;
}

/* The AAD where chacha20_poly1305.h wants it, and ChaCha20's nonce from the
 * header's: N[0..5) | N[6..13), N[5] (seq's top byte) left out. -ENOKEY when
 * there is no key, -EINVAL when the nonce is outside the suite's range. */
static __always_inline int seal_chacha_prepare(struct seal_aead_scratch *s, const struct seal_aead_key *key,
					       const __u8 *n, struct cp_nonce *nonce, const __u8 *aad, __u32 aad_len)
{
	_Static_assert(SEAL_CHACHA_SEQ_TOP == 5, "sender (4) | cpu (1) | seq");
	if (!key->set)
		return -ENOKEY;
	if (n[SEAL_CHACHA_SEQ_TOP] || aad_len > CP_MAX_AAD)
		return -EINVAL;
	nonce->w[0] = cp_le32(n[0], n[1], n[2], n[3]);
	nonce->w[1] = cp_le32(n[4], n[6], n[7], n[8]);
	nonce->w[2] = cp_le32(n[9], n[10], n[11], n[12]);
	/* A fixed-size copy: the length is public, but a fixed loop costs the
	 * verifier nothing per length. Bytes past aad_len are zeroed by the MAC. */
	for (__u32 i = 0; i < CP_MAX_AAD / 8; i++)
		((__u64 *)s->cp.aad)[i] = ((const __u64 *)aad)[i];
	return 0;
}

static __always_inline int seal_aead_seal(struct seal_aead_scratch *s, struct seal_aead_key *key, const __u8 *nonce,
					  const __u8 *aad, __u32 aad_len, __u32 len)
{
	struct cp_nonce n12;
	int err = seal_chacha_prepare(s, key, nonce, &n12, aad, aad_len);

	if (err == -EINVAL)
		return -ENOKEY; /* the stream's nonces are spent: nothing is sealed */
	if (err)
		return err;
	return cp_seal(&s->cp, (const __u32 *)key->key, n12, aad_len, len);
}

static __always_inline int seal_aead_open(struct seal_aead_scratch *s, struct seal_aead_key *key, const __u8 *nonce,
					  const __u8 *aad, __u32 aad_len, __u32 len)
{
	struct cp_nonce n12;
	int err = seal_chacha_prepare(s, key, nonce, &n12, aad, aad_len);

	if (err)
		return err;
	return cp_open(&s->cp, (const __u32 *)key->key, n12, aad_len, len);
}

#endif
