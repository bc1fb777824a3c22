/* The sealing path's per-CPU working buffer, and what is computed over it:
 * the associated data and the checksum sum of the wire bytes. */
#ifndef SEALNET_SEAL_BUFFER_H
#define SEALNET_SEAL_BUFFER_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "verdicts.h"
#include "parse.h"
#include "l4.h"
#include "seal_hdr.h"
#include "seal_aead.h"

#define SEAL_L4_MAX    TCP_MAX_HLEN
#define SEAL_AAD_FIXED (2 * sizeof(__be32) + 2) /* source, destination, zero, protocol */
#define SEAL_AAD_BUF   128 /* a power of two >= SEAL_AAD_FIXED + SEAL_L4_MAX + SEAL_HDR_LEN */
#define SEAL_WIRE_MAX  (SEAL_OVERHEAD + SEAL_AEAD_MAX_PAYLOAD)

_Static_assert(SEAL_AAD_FIXED + SEAL_L4_MAX + SEAL_HDR_LEN <= SEAL_AEAD_MAX_AAD, "the longest AAD fits the suite");
_Static_assert(SEAL_AEAD_MAX_AAD <= SEAL_AAD_BUF, "aad[] holds the longest AAD");
_Static_assert(SEAL_WIRE_MAX + 4 <= SEAL_AEAD_WIRE_LEN, "the wire buffer holds a sealed segment and checksum padding");

struct seal_scratch {
	struct seal_aead_scratch aead;
	__u8 aad[SEAL_AAD_BUF];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* one per enum sealnet_dir: egress and ingress never share a buffer */
	__type(key, __u32);
	__type(value, struct seal_scratch);
} seal_scratch SEC(".maps");

static __always_inline struct seal_scratch *seal_scratch_of(enum sealnet_dir dir)
{
	__u32 key = dir;

	return bpf_map_lookup_elem(&seal_scratch, &key);
}

_Static_assert(sizeof(struct seal_scratch) % sizeof(__u64) == 0, "the scratch is wiped in 8-byte words");

/* Zero a scratch buffer: after a packet, no plaintext, keystream or MAC state
 * stays behind in it for whoever reads this CPU's map value next. */
static __always_inline void seal_scratch_wipe(struct seal_scratch *s)
{
	volatile __u64 *word = (volatile __u64 *)s;

	for (__u32 i = 0; i < sizeof(*s) / sizeof(__u64); i++)
		word[i] = 0;
}

/* AAD = source | destination | 0 | protocol | L4 header (checksum zeroed) | seal header.
 * The seal header must already be at the head of the wire buffer. Returns the length, 0 on error. */
static __always_inline __u32 seal_build_aad(struct __sk_buff *skb, struct seal_scratch *s,
					    const struct l4_layout *l, const struct packet *p)
{
	__u32 saddr = bpf_htonl(p->src), daddr = bpf_htonl(p->dst), csum_off = l4_csum_off(l->proto);
	__u8 *wire = SEAL_AEAD_WIRE(&s->aead);
	__u64 n = l->l4_len;

	__builtin_memcpy(&s->aad[0], &saddr, sizeof(saddr));
	__builtin_memcpy(&s->aad[sizeof(saddr)], &daddr, sizeof(daddr));
	s->aad[2 * sizeof(__be32)] = 0;
	s->aad[2 * sizeof(__be32) + 1] = l->proto;
	barrier_var(n);
	if (n > SEAL_L4_MAX)
		return 0;
	if (n && bpf_skb_load_bytes(skb, l->l4_at, &s->aad[SEAL_AAD_FIXED], n))
		return 0;
	if (csum_off) {
		s->aad[SEAL_AAD_FIXED + csum_off] = 0;
		s->aad[SEAL_AAD_FIXED + csum_off + 1] = 0;
	}
	for (__u32 i = 0; i < SEAL_HDR_LEN; i++)
		s->aad[(SEAL_AAD_FIXED + n + i) & (SEAL_AAD_BUF - 1)] = wire[i];
	return SEAL_AAD_FIXED + n + SEAL_HDR_LEN;
}

/* The 32-bit one's complement sum of the wire buffer from its head (whole
 * sealed segment) or from the payload (plaintext), len bytes zero padded to 4. */
static __always_inline __s64 seal_wire_sum(struct seal_scratch *s, int from_payload, __u32 len)
{
	__u8 *wire = SEAL_AEAD_WIRE(&s->aead);
	__u32 from = from_payload ? SEAL_HDR_LEN : 0;

	for (__u32 i = 0; i < 4; i++)
		wire[(from + len + i) & (SEAL_AEAD_WIRE_LEN - 1)] = 0;
	__u64 n = (len + 3) & ~3u;
	barrier_var(n);
	if (n > SEAL_WIRE_MAX + 4)
		return -1;
	if (!from_payload)
		return bpf_csum_diff(NULL, 0, (__be32 *)wire, n, 0);
	return bpf_csum_diff(NULL, 0, (__be32 *)SEAL_AEAD_PAYLOAD(&s->aead), n, 0);
}

#endif
