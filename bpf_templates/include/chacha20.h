/* ChaCha20 (RFC 8439 section 2.3-2.4) in plain eBPF: 32-bit adds, xors and
 * rotates only, so no kfunc and no table; every operation is the same
 * whatever the key or the data (constant time).
 *
 * The cipher works on whole 64-byte blocks of 32-bit little-endian words
 * in map memory: the caller keeps the buffer a multiple of 64 bytes long
 * past the data, and bytes past the data's end come out as garbage (data
 * xor keystream) that the caller must ignore or overwrite. */
#ifndef CHACHA20_H
#define CHACHA20_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h> /* __noinline */

#define CHACHA20_BLOCK     64
#define CHACHA20_KEY_LEN   32
#define CHACHA20_NONCE_LEN 12
#define CHACHA20_WORDS     (CHACHA20_BLOCK / 4)

/* "expand 32-byte k" */
#define CHACHA20_C0 0x61707865u
#define CHACHA20_C1 0x3320646eu
#define CHACHA20_C2 0x79622d32u
#define CHACHA20_C3 0x6b206574u

/* The key and the nonce as the state's little-endian words. */
struct chacha20_key {
	__u32 k[CHACHA20_KEY_LEN / 4];
	__u32 nonce[CHACHA20_NONCE_LEN / 4];
	__u32 reserved;
};

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define chacha20_le32(x) (x)
#else
#define chacha20_le32(x) __builtin_bswap32(x)
#endif

#define CHACHA20_ROTL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))

#define CHACHA20_QR(a, b, c, d)                                                  \
	do {                                                                     \
		a += b; d ^= a; d = CHACHA20_ROTL(d, 16);                        \
		c += d; b ^= c; b = CHACHA20_ROTL(b, 12);                        \
		a += b; d ^= a; d = CHACHA20_ROTL(d, 8);                         \
		c += d; b ^= c; b = CHACHA20_ROTL(b, 7);                         \
	} while (0)

/* data[0..16) ^= ChaCha20 block (key, counter, nonce), as little-endian
 * words. data must be 4-byte aligned map or stack memory. A function of its
 * own: the sixteen state words spill to its stack, which must not add to
 * the stack of every caller. */
static __noinline __attribute__((unused)) void chacha20_xor_block(__u32 *data, const struct chacha20_key *ck, __u32 counter)
{
	__u32 x0 = CHACHA20_C0, x1 = CHACHA20_C1, x2 = CHACHA20_C2, x3 = CHACHA20_C3;
	__u32 x4 = ck->k[0], x5 = ck->k[1], x6 = ck->k[2], x7 = ck->k[3];
	__u32 x8 = ck->k[4], x9 = ck->k[5], x10 = ck->k[6], x11 = ck->k[7];
	__u32 x12 = counter, x13 = ck->nonce[0], x14 = ck->nonce[1], x15 = ck->nonce[2];

	/* 10 double rounds, unrolled: the JIT gets straight-line 32-bit ALU code. */
#pragma unroll
	for (int r = 0; r < 10; r++) {
		CHACHA20_QR(x0, x4, x8, x12);
		CHACHA20_QR(x1, x5, x9, x13);
		CHACHA20_QR(x2, x6, x10, x14);
		CHACHA20_QR(x3, x7, x11, x15);
		CHACHA20_QR(x0, x5, x10, x15);
		CHACHA20_QR(x1, x6, x11, x12);
		CHACHA20_QR(x2, x7, x8, x13);
		CHACHA20_QR(x3, x4, x9, x14);
	}
	data[0] ^= chacha20_le32(x0 + CHACHA20_C0);
	data[1] ^= chacha20_le32(x1 + CHACHA20_C1);
	data[2] ^= chacha20_le32(x2 + CHACHA20_C2);
	data[3] ^= chacha20_le32(x3 + CHACHA20_C3);
	data[4] ^= chacha20_le32(x4 + ck->k[0]);
	data[5] ^= chacha20_le32(x5 + ck->k[1]);
	data[6] ^= chacha20_le32(x6 + ck->k[2]);
	data[7] ^= chacha20_le32(x7 + ck->k[3]);
	data[8] ^= chacha20_le32(x8 + ck->k[4]);
	data[9] ^= chacha20_le32(x9 + ck->k[5]);
	data[10] ^= chacha20_le32(x10 + ck->k[6]);
	data[11] ^= chacha20_le32(x11 + ck->k[7]);
	data[12] ^= chacha20_le32(x12 + counter);
	data[13] ^= chacha20_le32(x13 + ck->nonce[0]);
	data[14] ^= chacha20_le32(x14 + ck->nonce[1]);
	data[15] ^= chacha20_le32(x15 + ck->nonce[2]);
}

#endif /* CHACHA20_H */
