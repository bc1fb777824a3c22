/* Replay protection: one sliding window per (sender, pair, epoch, CPU) stream,
 * as RFC 4303 / WireGuard keep it. */
#ifndef SEALNET_SEAL_REPLAY_H
#define SEALNET_SEAL_REPLAY_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include "bits.h"

enum seal_replay_window {
	SEAL_REPLAY_WORDS = 16, /* 64-bit words of the bitmap */
	SEAL_REPLAY_WINDOW = (SEAL_REPLAY_WORDS - 1) * 64, /* sequences below the top still accepted */
};

#define SEAL_MAX_STREAMS 16384

struct seal_stream {
	__u32 sender;
	__u16 pair;
	__u8 epoch;
	__u8 cpu;
};

struct seal_window {
	struct bpf_spin_lock lock;
	__u32 reserved;
	__u64 top;
	__u64 ring[SEAL_REPLAY_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SEAL_MAX_STREAMS);
	__type(key, struct seal_stream);
	__type(value, struct seal_window);
} seal_replay SEC(".maps");

/* Call with w->lock held. Returns 1 when seq is fresh; with update, records it. */
static __always_inline int seal_window(struct seal_window *w, __u64 seq, int update)
{
	__u64 word = (seq >> 6) & (SEAL_REPLAY_WORDS - 1), bit = 1ull << (seq & 63);

	if (seq == 0 || seq + SEAL_REPLAY_WINDOW <= w->top)
		return 0;
	if (seq <= w->top) {
		if (w->ring[word] & bit)
			return 0;
	} else if (update) {
		__u64 current = w->top >> 6, advance = (seq >> 6) - current;
		for (__u32 i = 1; i <= SEAL_REPLAY_WORDS; i++)
			w->ring[(current + i) & (SEAL_REPLAY_WORDS - 1)] &= ~mask_lt(i, advance + 1);
		w->top = seq;
	}
	if (update)
		w->ring[word] |= bit;
	return 1;
}

/* A new stream's window, from read-only data rather than the stack: the
 * ingress program's stack is shared with the AEAD's bpf_loop callbacks. */
static const struct seal_window seal_window_empty;

/* Is seq fresh on this stream? With update (after the tag verified), record it. */
static __always_inline int seal_replay_check(struct seal_stream *stream, __u64 seq, int update)
{
	struct seal_window *w = bpf_map_lookup_elem(&seal_replay, stream);
	int fresh;

	if (!w) {
		if (!update)
			return seq != 0;
		bpf_map_update_elem(&seal_replay, stream, &seal_window_empty, BPF_NOEXIST);
		w = bpf_map_lookup_elem(&seal_replay, stream);
		if (!w)
			return 0; /* stream table full: fail closed */
	}
	bpf_spin_lock(&w->lock);
	fresh = seal_window(w, seq, update);
	bpf_spin_unlock(&w->lock);
	return fresh;
}

#endif
