/* The v1 seal header (docs/wire-format.md): 16 bytes after the L4 header,
 * multi-byte fields big endian; the 13 bytes from `sender` on are the nonce.
 * contracts/abi.py holds the same layout and values (checked against BTF). */
#ifndef SEALNET_SEAL_HDR_H
#define SEALNET_SEAL_HDR_H

#include <stddef.h>
#include <linux/types.h>

struct seal_hdr {
	__u8 version;  /* SEAL_VERSION */
	__u8 suite;    /* enum seal_suite */
	__u8 epoch;    /* low 8 bits of the key's epoch */
	__be32 sender; /* the sending node's id */
	__u8 cpu;      /* the sending CPU: one sequence stream each */
	__be64 seq;    /* from 1, per (sender, CPU, key) */
} __attribute__((packed));

enum seal_suite {
	SEAL_SUITE_AES_128_CCM = 1,
	SEAL_SUITE_CHACHA20_POLY1305 = 2,
};

enum seal_format {
	SEAL_VERSION = 1,
	SEAL_HDR_LEN = sizeof(struct seal_hdr),
	SEAL_TAG_LEN = 16, /* every suite's tag, after the ciphertext */
	SEAL_OVERHEAD = SEAL_HDR_LEN + SEAL_TAG_LEN,
	SEAL_NONCE_OFF = offsetof(struct seal_hdr, sender), /* nonce = sender | cpu | seq */
	SEAL_NONCE_LEN = SEAL_HDR_LEN - SEAL_NONCE_OFF,
	SEAL_EPOCH_MASK = 0xFF,
	SEAL_MAX_CPUS = 256, /* what the cpu byte can name */
};

_Static_assert(SEAL_HDR_LEN == 16 && SEAL_NONCE_LEN == 13, "the v1 header and nonce");

#endif
