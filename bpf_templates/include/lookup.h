/* Branchless binary search over sorted __u32 keys.
 *
 * Why branchless: with `if (key <= v) base = mid` the verifier follows both
 * branches with distinct constant indices and its work grows with the table
 * (and multiplies across consecutive searches). Adding `ge * half` keeps one
 * path per step whose index is a bounded range, so verification cost is
 * O(log n) per search whatever the table size. */
#ifndef SEALNET_LOOKUP_H
#define SEALNET_LOOKUP_H

#include "kernel_types.h"

#define SEARCH_MAX_STEPS 32 /* ceil(log2) of any u32-indexed table */

/* Largest index i in [lo, lo + n) with keys[i] <= v, given keys[lo] <= v.
 * Returns -1 (caller drops) if an index would leave the array of `cap`. */
static __always_inline int search_le(const volatile __u32 *keys, __u32 cap, __u32 lo, __u32 n,
				     __u32 v, __u32 *out)
{
	__u32 base = lo;

	for (int i = 0; i < SEARCH_MAX_STEPS; i++) {
		if (n <= 1)
			break;
		__u32 half = n >> 1;
		__u32 idx = base + half;
		if (idx >= cap)
			return -1;
		/* 1 when keys[idx] <= v: the borrow of a 64-bit subtraction of
		 * two 32-bit values lands in bit 63. */
		__u64 ge = (((__u64)v - (__u64)keys[idx]) >> 63) ^ 1;
		/* Hide ge's 0/1 range from clang so it multiplies instead of
		 * turning this back into a branch. */
		asm volatile("" : "+r"(ge));
		base += (__u32)ge * half;
		n -= half;
	}
	*out = base;
	return 0;
}

#endif
