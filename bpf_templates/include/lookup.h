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
#include <bpf/bpf_helpers.h> /* barrier_var */

#define SEARCH_MAX_STEPS 32 /* ceil(log2) of any u32-indexed table */

/* Largest index i in [lo, lo + n) with keys[i] <= v, given keys[lo] <= v.
 * Returns -1 (caller drops) if an index would leave the array of `cap`. */
static __always_inline int search_le(const volatile __u32 *keys, __u64 cap, __u64 lo, __u64 n,
				     __u32 v, __u64 *out)
{
	/* 64-bit indices throughout: a 32-bit index would be truncated in a
	 * copy the verifier does not connect with the register used to index. */
	__u64 base = lo;

	for (int i = 0; i < SEARCH_MAX_STEPS; i++) {
		if (n <= 1)
			break;
		__u64 half = n >> 1;
		__u64 idx = base + half;
		if (idx >= cap)
			return -1;
		/* ge = 1 when keys[idx] <= v: the borrow of a 64-bit subtraction
		 * of two 32-bit values lands in bit 63. The barriers hide the
		 * difference and ge's 0/1 range from clang, which would
		 * otherwise turn this back into a compare-and-branch. (A mask
		 * `(diff >> 63) - 1` instead of the multiply loses the verifier's
		 * bounds and blows its state count up: keep the multiply.) */
		__u64 diff = (__u64)v - (__u64)keys[idx];
		barrier_var(diff);
		__u64 ge = (diff >> 63) ^ 1;
		barrier_var(ge);
		base += ge * half;
		n -= half;
	}
	*out = base;
	return 0;
}

/* Index of the interval holding v, through an address-prefix index
 * (compiler/tables.py PrefixIndex): bucket 0 holds keys below `base`,
 * 1 + ((v - base) >> shift) the span, `buckets` + 1 everything above; the
 * search covers intervals index[b] .. index[b + 1], a handful instead of all.
 * The bucket is computed without branches, like search_le's steps: a branch
 * here would double the verifier's paths through everything after it. */
static __always_inline int search_indexed(const volatile __u32 *keys, __u64 cap,
					  const volatile __u32 *index, __u64 index_cap, __u32 base,
					  __u32 shift, __u64 buckets, __u32 v, __u64 *out)
{
	__u64 diff = (__u64)v - (__u64)base; /* bit 63: v < base */
	barrier_var(diff);
	__u64 above = (diff >> 63) ^ 1;
	barrier_var(above);
	__u64 off = (diff & 0xFFFFFFFFull) >> shift;
	__u64 over = (buckets - off) >> 63; /* off > buckets: clamp to the last bucket */
	barrier_var(over);
	off = off * (over ^ 1) + buckets * over;
	__u64 b = above * (off + 1);

	if (b + 1 >= index_cap)
		return -1;
	__u64 lo = index[b];
	__u64 hi = index[b + 1];
	if (hi < lo || hi >= cap)
		return -1;
	return search_le(keys, cap, lo, hi - lo + 1, v, out);
}

#endif
