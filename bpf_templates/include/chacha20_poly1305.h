/* The ChaCha20-Poly1305 AEAD (RFC 8439 section 2.8) with a 16-byte tag and
 * a 12-byte nonce, in plain eBPF (chacha20.h, poly1305.h): no kfunc.
 *
 * The caller provides a cp_scratch in map memory (per-CPU in the data
 * plane), writes the associated data to s->aad and the payload to
 * CP_PAYLOAD(s), after CP_WIRE_HEAD bytes it may use for its own header, so
 * header, payload and tag leave as one contiguous buffer.
 *
 * Cost follows the length: bpf_loop runs over the 64-byte ChaCha20 blocks
 * and the 16-byte Poly1305 blocks present, and nothing is copied. Lengths
 * are public; nothing branches on or indexes by a key or data byte. */
#ifndef CHACHA20_POLY1305_H
#define CHACHA20_POLY1305_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "chacha20.h"
#include "poly1305.h"

#define CP_TAG_LEN   POLY1305_TAG_LEN
#define CP_NONCE_LEN CHACHA20_NONCE_LEN
#define CP_KEY_LEN   CHACHA20_KEY_LEN
#ifndef CP_MAX_PAYLOAD
#define CP_MAX_PAYLOAD 1472
#endif
#define CP_MAX_AAD   96
/* Powers of two, so a masked word index stays inside the buffer. */
#define CP_AAD_BUF   128
#define CP_WIRE_HEAD 16
#define CP_WIRE_LEN  2048
#define CP_EINVAL    22
#define CP_EBADMSG   74

_Static_assert(CP_MAX_AAD + POLY1305_BLOCK + 4 <= CP_AAD_BUF, "aad[] holds the AAD and its zero padding");
_Static_assert(CP_WIRE_HEAD + CP_MAX_PAYLOAD + CHACHA20_BLOCK <= CP_WIRE_LEN,
	       "wire[] holds the header, whole ChaCha20 blocks of payload and the tag");
_Static_assert(CP_WIRE_HEAD % POLY1305_BLOCK == 0,
	       "the payload starts on a Poly1305 block");

struct cp_scratch {
	struct chacha20_key key;    /* key and nonce words of this packet */
	struct poly1305_state poly;
	__u32 block0[CHACHA20_WORDS]; /* key stream block 0: the one-time key */
	__u32 tag[CP_TAG_LEN / 4];
	__u8 received[CP_TAG_LEN]; /* open: the tag that came with the ciphertext */
	__u32 reserved; /* aad[] starts 8-byte aligned */
	/* aad and wire follow each other: Poly1305 reads both by one offset from aad. */
	__u8 aad[CP_AAD_BUF] __attribute__((aligned(8)));
	/* caller's header | payload (plaintext or ciphertext, in place) | tag | padding */
	__u8 wire[CP_WIRE_LEN] __attribute__((aligned(8)));
};

#define CP_PAYLOAD(s) (&(s)->wire[CP_WIRE_HEAD])
#define CP_POLY_WIRE  (CP_AAD_BUF + CP_WIRE_HEAD) /* payload offset from aad[] */

_Static_assert(__builtin_offsetof(struct cp_scratch, aad) ==
		       __builtin_offsetof(struct cp_scratch, tag) + 2 * CP_TAG_LEN + 4,
	       "no padding: the tests read tag[] at a fixed place");
_Static_assert(__builtin_offsetof(struct cp_scratch, wire) ==
		       __builtin_offsetof(struct cp_scratch, aad) + CP_AAD_BUF,
	       "wire[] right after aad[]");

/* The bpf_loop callbacks' context: on the caller's stack. */
struct cp_loop {
	struct cp_scratch *s;
	__u64 from; /* Poly1305: byte offset from aad[] of block 0 */
};

static int cp_chacha_block(__u32 i, void *data)
{
	struct cp_scratch *s = ((struct cp_loop *)data)->s;
	__u64 at = CP_WIRE_HEAD + (__u64)i * CHACHA20_BLOCK;

	if (at > CP_WIRE_LEN - CHACHA20_BLOCK)
		return 1;
	/* Counter 1 onwards: block 0 made the one-time key. */
	chacha20_xor_block((__u32 *)&s->wire[at], &s->key, i + 1);
	return 0;
}

#define CP_POLY_CHUNK 4 /* Poly1305 blocks per bpf_loop step: the state is loaded once for them */

static __always_inline int cp_poly_step(__u32 i, void *data, const __u32 per_step)
{
	struct cp_loop *loop = data;
	struct cp_scratch *s = loop->s;
	__u64 at = loop->from + (__u64)i * per_step * POLY1305_BLOCK;

	if (at > CP_AAD_BUF + CP_WIRE_LEN - per_step * POLY1305_BLOCK)
		return 1;
	const __u32 *m = (const __u32 *)&s->aad[at];
	POLY1305_BLOCKS(&s->poly, m, per_step, chacha20_le32);
	return 0;
}

static int cp_poly_block(__u32 i, void *data)
{
	return cp_poly_step(i, data, 1);
}

static int cp_poly_chunk(__u32 i, void *data)
{
	return cp_poly_step(i, data, CP_POLY_CHUNK);
}

/* Poly1305 over the n blocks at loop->from: whole chunks, then the rest one by one. */
static __always_inline void cp_poly(struct cp_loop *loop, __u64 n)
{
	__u64 chunks = n / CP_POLY_CHUNK;

	bpf_loop(chunks, cp_poly_chunk, loop, 0);
	loop->from += chunks * CP_POLY_CHUNK * POLY1305_BLOCK;
	bpf_loop(n % CP_POLY_CHUNK, cp_poly_block, loop, 0);
}

/* Zero buf[len .. next 16-byte boundary and a little beyond) with aligned
 * word stores: the Poly1305 padding. words_len is a power of two. */
static __always_inline void cp_zero_tail(__u32 *words, __u32 words_len, __u32 len)
{
	__u64 w = len >> 2;
	/* Keep the first len % 4 bytes of the word that holds byte len. */
	__u32 keep = ((__u64)1 << ((len & 3) * 8)) - 1;

	words[w & (words_len - 1)] &= chacha20_le32(keep);
	for (__u32 i = 1; i <= POLY1305_BLOCK / 4; i++)
		words[(w + i) & (words_len - 1)] = 0;
}

static __always_inline __u64 cp_blocks(__u32 len, __u32 block)
{
	return ((__u64)len + block - 1) / block;
}

/* Poly1305 over aad (padded) | ciphertext (padded) | le64 lengths, into s->tag. */
static __always_inline void cp_mac(struct cp_scratch *s, __u32 aad_len, __u32 len)
{
	struct cp_loop loop = { .s = s, .from = 0 };

	poly1305_init(&s->poly, s->block0);
	cp_zero_tail((__u32 *)s->aad, CP_AAD_BUF / 4, aad_len);
	cp_poly(&loop, cp_blocks(aad_len, POLY1305_BLOCK));
	cp_zero_tail((__u32 *)s->wire, CP_WIRE_LEN / 4, CP_WIRE_HEAD + len);
	loop.from = CP_POLY_WIRE;
	cp_poly(&loop, cp_blocks(len, POLY1305_BLOCK));
	poly1305_block(&s->poly, aad_len, 0, len, 0);
	poly1305_finish(&s->poly, s->tag);
}

/* The nonce's 12 bytes as ChaCha20's three words (in registers, not on the
 * stack, which the data plane's programs have little of). */
struct cp_nonce {
	__u32 w[CHACHA20_NONCE_LEN / 4];
};

/* A little-endian word from four bytes, any alignment. */
static __always_inline __u32 cp_le32(__u8 b0, __u8 b1, __u8 b2, __u8 b3)
{
	return b0 | b1 << 8 | b2 << 16 | (__u32)b3 << 24;
}

/* Key and nonce words, and key stream block 0. key: 8 little-endian words
 * (the 32 key bytes, 4-byte aligned). */
static __always_inline void cp_start(struct cp_scratch *s, const __u32 *key, struct cp_nonce nonce)
{
	for (__u32 i = 0; i < CHACHA20_KEY_LEN / 4; i++)
		s->key.k[i] = chacha20_le32(key[i]);
	for (__u32 i = 0; i < CHACHA20_NONCE_LEN / 4; i++)
		s->key.nonce[i] = nonce.w[i];
	s->key.reserved = 0;
	for (__u32 i = 0; i < CHACHA20_WORDS; i++)
		s->block0[i] = 0;
	chacha20_xor_block(s->block0, &s->key, 0);
}

/* Payload ^= key stream from block 1, whole blocks (bytes past len: garbage). */
static __always_inline void cp_crypt(struct cp_scratch *s, __u32 len)
{
	struct cp_loop loop = { .s = s };

	bpf_loop(cp_blocks(len, CHACHA20_BLOCK), cp_chacha_block, &loop, 0);
}

/* Seal CP_PAYLOAD(s)[0..len) in place with s->aad[0..aad_len); the tag goes
 * to s->tag and right after the ciphertext in wire[]. Returns 0 or -CP_EINVAL. */
static __always_inline int cp_seal(struct cp_scratch *s, const __u32 *key, struct cp_nonce nonce,
				   __u32 aad_len, __u32 len)
{
	if (aad_len > CP_MAX_AAD || len > CP_MAX_PAYLOAD)
		return -CP_EINVAL;
	cp_start(s, key, nonce);
	cp_crypt(s, len);
	cp_mac(s, aad_len, len);
	const __u8 *tag = (const __u8 *)s->tag;
	for (__u32 i = 0; i < CP_TAG_LEN; i++)
		s->wire[(CP_WIRE_HEAD + len + i) & (CP_WIRE_LEN - 1)] = tag[i];
	return 0;
}

/* Open CP_PAYLOAD(s)[0..len) in place, the tag read from right after the
 * ciphertext. Returns 0 when the tag verifies (compared in constant time),
 * -CP_EBADMSG when it does not (the payload is then left encrypted),
 * -CP_EINVAL on bad lengths. */
static __always_inline int cp_open(struct cp_scratch *s, const __u32 *key, struct cp_nonce nonce,
				   __u32 aad_len, __u32 len)
{
	__u32 diff = 0;

	if (aad_len > CP_MAX_AAD || len > CP_MAX_PAYLOAD)
		return -CP_EINVAL;
	for (__u32 i = 0; i < CP_TAG_LEN; i++)
		s->received[i] = s->wire[(CP_WIRE_HEAD + len + i) & (CP_WIRE_LEN - 1)];
	cp_start(s, key, nonce);
	cp_mac(s, aad_len, len);
	const __u8 *tag = (const __u8 *)s->tag;
	for (__u32 i = 0; i < CP_TAG_LEN; i++)
		diff |= s->received[i] ^ tag[i];
	barrier_var(diff);
	if (diff) /* public from here on: the packet is dropped */
		return -CP_EBADMSG;
	cp_crypt(s, len);
	return 0;
}

#endif /* CHACHA20_POLY1305_H */
