/* Poly1305 (RFC 8439 section 2.5) in plain eBPF, after poly1305-donna's
 * 32-bit code: the accumulator and r in five 26-bit limbs, so every product
 * is below 2^52 and a row of five (with the *5 folding) below 2^58: it fits
 * a u64 with no carry lost. No branch and no memory index depends on the
 * key or the message (constant time); the final reduction selects with a
 * mask the compiler cannot turn back into a branch.
 *
 * Only whole 16-byte blocks with the 2^128 bit set: that is all the AEAD
 * construction of RFC 8439 section 2.8 needs (it pads every part with
 * zeros to 16 bytes). */
#ifndef POLY1305_H
#define POLY1305_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h> /* __noinline, barrier_var */

#define POLY1305_BLOCK   16
#define POLY1305_KEY_LEN 32
#define POLY1305_TAG_LEN 16
#define POLY1305_MASK26  0x3ffffffu
#define POLY1305_HIBIT   (1u << 24) /* 2^128 in the top limb (bits 104..129) */

struct poly1305_state {
	__u32 r[5];
	__u32 s[4]; /* the second half of the key, added at the end */
	__u32 h[5];
	__u32 reserved;
};

/* key: the 32-byte one-time key as eight little-endian words. */
static __always_inline void poly1305_init(struct poly1305_state *st, const __u32 key[8])
{
	__u32 t0 = key[0], t1 = key[1], t2 = key[2], t3 = key[3];

	/* r is clamped (RFC 8439 2.5.1) while it is cut into limbs. */
	st->r[0] = t0 & 0x3ffffff;
	st->r[1] = ((t0 >> 26) | (t1 << 6)) & 0x3ffff03;
	st->r[2] = ((t1 >> 20) | (t2 << 12)) & 0x3ffc0ff;
	st->r[3] = ((t2 >> 14) | (t3 << 18)) & 0x3f03fff;
	st->r[4] = (t3 >> 8) & 0x00fffff;
	st->s[0] = key[4];
	st->s[1] = key[5];
	st->s[2] = key[6];
	st->s[3] = key[7];
	st->h[0] = st->h[1] = st->h[2] = st->h[3] = st->h[4] = 0;
	st->reserved = 0;
}

/* h = (h + m + 2^128) * r mod 2^130 - 5 on the locals h0..h4, r0..r4, s1..s4
 * of the functions below; m as four little-endian words. */
#define POLY1305_ROUND(m0, m1, m2, m3)                                                   \
	do {                                                                             \
		__u64 d0, d1, d2, d3, d4, c;                                             \
		h0 += (m0) & POLY1305_MASK26;                                            \
		h1 += (((m0) >> 26) | ((m1) << 6)) & POLY1305_MASK26;                    \
		h2 += (((m1) >> 20) | ((m2) << 12)) & POLY1305_MASK26;                   \
		h3 += (((m2) >> 14) | ((m3) << 18)) & POLY1305_MASK26;                   \
		h4 += ((m3) >> 8) | POLY1305_HIBIT;                                      \
		d0 = h0 * r0 + h1 * s4 + h2 * s3 + h3 * s2 + h4 * s1;                    \
		d1 = h0 * r1 + h1 * r0 + h2 * s4 + h3 * s3 + h4 * s2;                    \
		d2 = h0 * r2 + h1 * r1 + h2 * r0 + h3 * s4 + h4 * s3;                    \
		d3 = h0 * r3 + h1 * r2 + h2 * r1 + h3 * r0 + h4 * s4;                    \
		d4 = h0 * r4 + h1 * r3 + h2 * r2 + h3 * r1 + h4 * r0;                    \
		/* Partial carry: limbs end below 2^26 + small, enough for the next block. */ \
		c = d0 >> 26; h0 = d0 & POLY1305_MASK26;                                 \
		d1 += c; c = d1 >> 26; h1 = d1 & POLY1305_MASK26;                        \
		d2 += c; c = d2 >> 26; h2 = d2 & POLY1305_MASK26;                        \
		d3 += c; c = d3 >> 26; h3 = d3 & POLY1305_MASK26;                        \
		d4 += c; c = d4 >> 26; h4 = d4 & POLY1305_MASK26;                        \
		h0 += c * 5; c = h0 >> 26; h0 &= POLY1305_MASK26;                        \
		h1 += c;                                                                 \
	} while (0)

#define POLY1305_LOAD(st)                                                                \
	__u64 r0 = (st)->r[0], r1 = (st)->r[1], r2 = (st)->r[2], r3 = (st)->r[3], r4 = (st)->r[4]; \
	__u64 s1 = r1 * 5, s2 = r2 * 5, s3 = r3 * 5, s4 = r4 * 5;                        \
	__u64 h0 = (st)->h[0], h1 = (st)->h[1], h2 = (st)->h[2], h3 = (st)->h[3], h4 = (st)->h[4]

#define POLY1305_STORE(st)                                                               \
	do {                                                                             \
		(st)->h[0] = h0; (st)->h[1] = h1; (st)->h[2] = h2;                       \
		(st)->h[3] = h3; (st)->h[4] = h4;                                        \
	} while (0)

/* One block given as four little-endian words. */
static __always_inline void poly1305_block(struct poly1305_state *st, __u32 m0, __u32 m1, __u32 m2, __u32 m3)
{
	POLY1305_LOAD(st);
	POLY1305_ROUND((__u64)m0, (__u64)m1, (__u64)m2, (__u64)m3);
	POLY1305_STORE(st);
}

/* n (a constant) blocks from m, 4-byte aligned memory of words already in
 * host order (le() converts from little-endian): the state is loaded and
 * stored once for all of them. */
#define POLY1305_BLOCKS(st, m, n, le)                                                   \
	do {                                                                             \
		POLY1305_LOAD(st);                                                       \
		_Pragma("unroll") for (int _b = 0; _b < (n); _b++)                       \
			POLY1305_ROUND((__u64)le((m)[4 * _b]), (__u64)le((m)[4 * _b + 1]), \
				       (__u64)le((m)[4 * _b + 2]), (__u64)le((m)[4 * _b + 3])); \
		POLY1305_STORE(st);                                                      \
	} while (0)

/* The tag, (h mod 2^130 - 5) + s mod 2^128, as four little-endian words.
 * A function of its own, so a test can check the code clang made of the
 * final reduction has no conditional jump. */
static __noinline __attribute__((unused)) void poly1305_finish(const struct poly1305_state *st, __u32 tag[4])
{
	__u32 h0 = st->h[0], h1 = st->h[1], h2 = st->h[2], h3 = st->h[3], h4 = st->h[4];
	__u32 g0, g1, g2, g3, g4, c, mask;
	__u64 f;

	/* Full carry. */
	c = h1 >> 26; h1 &= POLY1305_MASK26;
	h2 += c; c = h2 >> 26; h2 &= POLY1305_MASK26;
	h3 += c; c = h3 >> 26; h3 &= POLY1305_MASK26;
	h4 += c; c = h4 >> 26; h4 &= POLY1305_MASK26;
	h0 += c * 5; c = h0 >> 26; h0 &= POLY1305_MASK26;
	h1 += c;

	/* g = h + 5 - 2^130: h >= p exactly when g does not borrow. */
	g0 = h0 + 5; c = g0 >> 26; g0 &= POLY1305_MASK26;
	g1 = h1 + c; c = g1 >> 26; g1 &= POLY1305_MASK26;
	g2 = h2 + c; c = g2 >> 26; g2 &= POLY1305_MASK26;
	g3 = h3 + c; c = g3 >> 26; g3 &= POLY1305_MASK26;
	g4 = h4 + c - (1u << 26);

	mask = (g4 >> 31) - 1; /* all ones: take g; zero: keep h */
	barrier_var(mask); /* a mask stays a mask: BPF has no conditional move, a select would branch */
	g0 &= mask; g1 &= mask; g2 &= mask; g3 &= mask; g4 &= mask;
	mask = ~mask;
	h0 = (h0 & mask) | g0;
	h1 = (h1 & mask) | g1;
	h2 = (h2 & mask) | g2;
	h3 = (h3 & mask) | g3;
	h4 = (h4 & mask) | g4;

	/* Back to four 32-bit words, then + s mod 2^128. */
	h0 = h0 | (h1 << 26);
	h1 = (h1 >> 6) | (h2 << 20);
	h2 = (h2 >> 12) | (h3 << 14);
	h3 = (h3 >> 18) | (h4 << 8);

	/* Opaque sums: clang would otherwise add in 32 bits and find each carry
	 * with a compare and branch, on secret values. */
	f = (__u64)h0 + st->s[0]; barrier_var(f); tag[0] = f;
	f = (__u64)h1 + st->s[1] + (f >> 32); barrier_var(f); tag[1] = f;
	f = (__u64)h2 + st->s[2] + (f >> 32); barrier_var(f); tag[2] = f;
	f = (__u64)h3 + st->s[3] + (f >> 32); tag[3] = f;
}

#endif /* POLY1305_H */
