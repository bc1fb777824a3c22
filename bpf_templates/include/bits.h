/* Branch-free helpers: loops stay straight-line, so the verifier walks each
 * loop once instead of once per possible length. */
#ifndef SEALNET_BITS_H
#define SEALNET_BITS_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h> /* barrier_var */

/* All ones when i < n, else zero. */
static __always_inline __u64 mask_lt(__u64 i, __u64 n)
{
	__s64 d = (__s64)i - (__s64)n;

	/* Hidden from clang, or it turns the shift back into a compare and
	 * branch, and the verifier would split its state on every length. */
	barrier_var(d);
	return (__u64)(d >> 63);
}

/* All ones when a == b, else zero. */
static __always_inline __u64 mask_eq(__u64 a, __u64 b)
{
	__u64 d = a ^ b;

	barrier_var(d);
	return ((d | -d) >> 63) - 1; /* the top bit of d | -d is set exactly when d != 0 */
}

/* a where mask is all ones, b where it is zero: a choice the verifier walks as one path. */
static __always_inline __u64 choose(__u64 mask, __u64 a, __u64 b)
{
	return b ^ ((a ^ b) & mask);
}

/* Zero secret bytes; volatile, so the stores are not optimised away. */
static __always_inline void wipe(volatile __u8 *p, __u32 n)
{
	for (__u32 i = 0; i < n; i++)
		p[i] = 0;
}

#endif
