/* Replay protection: one sliding window per (sender, pair, epoch, CPU) stream,
 * as RFC 4303 / WireGuard keep it, in a set-associative table whose eviction
 * never lets an old packet in again (docs/wire-format.md, "The stream table").
 *
 * A stream lives only in set siphash13(salt, stream) % SEAL_REPLAY_SETS, in one
 * of SEAL_REPLAY_WAYS ways. A full set evicts its least recently used way and
 * raises the victim's floor, the cell of its key slot (pair, epoch) in the
 * set's floor group, to the victim's top. A stream not in its set is admitted
 * only above its floor, with every sequence at or below it marked seen: every
 * packet of an evicted stream is at or below its top, and the stream only ever
 * comes back to the same set, so none of them comes back. A floor is raised
 * by a pair's own streams only: a key holder cannot raise another pair's. */
#ifndef SEALNET_SEAL_REPLAY_H
#define SEALNET_SEAL_REPLAY_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include "bits.h"
#include "seal_maps.h"

enum seal_replay_window {
	SEAL_REPLAY_WORDS = 16, /* 64-bit words of the bitmap */
	SEAL_REPLAY_WINDOW = (SEAL_REPLAY_WORDS - 1) * 64, /* sequences below the top still accepted */
	SEAL_REPLAY_WAYS = 4, /* streams per set */
	SEAL_REPLAY_SETS = 4096, /* a power of two: 16384 streams */
	SEAL_REPLAY_FLOOR_CELLS = 1 << 17, /* at most this many 8-byte floor cells (1 MiB) */
};

#define SEAL_KEY_SLOTS (SEAL_PAIRS * SEAL_EPOCH_SLOTS)
/* Sets share floor groups when the policy has many pairs: set % SEAL_REPLAY_FLOOR_GROUPS. */
#define SEAL_REPLAY_FLOOR_GROUPS                                                                             \
	(SEAL_REPLAY_FLOOR_CELLS / SEAL_KEY_SLOTS > SEAL_REPLAY_SETS ? SEAL_REPLAY_SETS :                    \
	 SEAL_REPLAY_FLOOR_CELLS / SEAL_KEY_SLOTS < 1 ? 1 : SEAL_REPLAY_FLOOR_CELLS / SEAL_KEY_SLOTS)

struct seal_way {
	__u64 stream; /* seal_stream_word(); 0: the way is free (pair 0 is never a stream's) */
	__u64 used;   /* bpf_ktime_get_ns() of the last packet accepted: least recently used goes first */
	__u64 top;
	__u64 ring[SEAL_REPLAY_WORDS];
};

struct seal_set {
	struct bpf_spin_lock lock;
	__u32 reserved;
	struct seal_way way[SEAL_REPLAY_WAYS];
};

/* Per key slot (seal_key_slot()), the highest top of any stream of it evicted from
 * the group's sets. Raised atomically: a group's sets have locks of their own. */
struct seal_floors {
	__u64 top[SEAL_KEY_SLOTS];
};

/* The hash key, random per table: written by the node agent when it makes the
 * table, carried with it on a reload and in the record on disk (a stream must
 * keep its set). */
struct seal_replay_salt {
	__u64 k0;
	__u64 k1;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SEAL_REPLAY_SETS);
	__type(key, __u32);
	__type(value, struct seal_set);
} seal_replay SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SEAL_REPLAY_FLOOR_GROUPS);
	__type(key, __u32); /* set % SEAL_REPLAY_FLOOR_GROUPS */
	__type(value, struct seal_floors);
} seal_replay_floor SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct seal_replay_salt);
} seal_replay_salt SEC(".maps");

/* The stream a packet belongs to, as one word: what a way's `stream` holds. */
/* Streams evicted from the table, per CPU: a table under pressure, or a key holder
 * flooding it with made-up sender ids (`sealnet node status`, metrics). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seal_replay_evictions SEC(".maps");

static __always_inline __u64 seal_stream_word(__u32 sender, __u16 pair, __u8 epoch, __u8 cpu)
{
	return (__u64)sender | (__u64)pair << 32 | (__u64)epoch << 48 | (__u64)cpu << 56;
}

#define SEAL_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SEAL_SIPROUND(v0, v1, v2, v3)                                                                        \
	do {                                                                                                 \
		v0 += v1; v1 = SEAL_ROTL(v1, 13); v1 ^= v0; v0 = SEAL_ROTL(v0, 32);                          \
		v2 += v3; v3 = SEAL_ROTL(v3, 16); v3 ^= v2;                                                  \
		v0 += v3; v3 = SEAL_ROTL(v3, 21); v3 ^= v0;                                                  \
		v2 += v1; v1 = SEAL_ROTL(v1, 17); v1 ^= v2; v2 = SEAL_ROTL(v2, 32);                          \
	} while (0)

/* SipHash-1-3 of one 8-byte word: a stream's set, unpredictable without the salt,
 * so no key holder can aim its streams at one set. */
static __always_inline __u32 seal_replay_set_of(__u64 stream, const struct seal_replay_salt *salt)
{
	__u64 v0 = salt->k0 ^ 0x736f6d6570736575ull, v1 = salt->k1 ^ 0x646f72616e646f6dull;
	__u64 v2 = salt->k0 ^ 0x6c7967656e657261ull, v3 = salt->k1 ^ 0x7465646279746573ull;
	__u64 last = 8ull << 56; /* the message length, in the final block */

	v3 ^= stream;
	SEAL_SIPROUND(v0, v1, v2, v3);
	v0 ^= stream;
	v3 ^= last;
	SEAL_SIPROUND(v0, v1, v2, v3);
	v0 ^= last;
	v2 ^= 0xff;
	SEAL_SIPROUND(v0, v1, v2, v3);
	SEAL_SIPROUND(v0, v1, v2, v3);
	SEAL_SIPROUND(v0, v1, v2, v3);
	return (v0 ^ v1 ^ v2 ^ v3) & (SEAL_REPLAY_SETS - 1);
}

/* A stream word's key slot: seal_key_slot(pair, epoch). */
static __always_inline __u32 seal_stream_key_slot(__u64 stream)
{
	return seal_key_slot((stream >> 32) & 0xffff, (stream >> 48) & 0xff);
}

/* The floor of a key slot in a group, or NULL for a slot outside the policy's pairs. */
static __always_inline __u64 *seal_floor_cell(struct seal_floors *floors, __u64 slot)
{
	barrier_var(slot); /* bounded here, where it indexes: clang would test a copy */
	if (slot >= SEAL_KEY_SLOTS)
		return NULL;
	return &floors->top[slot];
}

/* Raise a floor to at least top. Atomic: other sets of the group raise the same cells
 * under their own locks. Returns 0 when it could not (contended past any honest rate). */
static __always_inline int seal_floor_raise(__u64 *floor, __u64 top)
{
	for (__u32 i = 0; i < 8; i++) {
		__u64 seen = *(volatile __u64 *)floor;

		if (seen >= top || __sync_val_compare_and_swap(floor, seen, top) == seen)
			return 1;
	}
	return 0;
}

/* Call with the set's lock held. Returns 1 when seq is fresh; with update, records it. */
static __always_inline int seal_window(struct seal_way *w, __u64 seq, int update)
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

/* Lock held. The way holding stream, or SEAL_REPLAY_WAYS. */
static __always_inline __u32 seal_way_of(const struct seal_set *set, __u64 stream)
{
	__u64 found = SEAL_REPLAY_WAYS;

	for (__u32 i = 0; i < SEAL_REPLAY_WAYS; i++)
		found = choose(mask_eq(set->way[i].stream, stream), i, found);
	return found;
}

/* Lock held. A free way, else the least recently used one (the lowest index on a tie). */
static __always_inline __u32 seal_victim(const struct seal_set *set)
{
	__u64 victim = 0, taken = set->way[0].stream, used = set->way[0].used;

	for (__u32 i = 1; i < SEAL_REPLAY_WAYS; i++) {
		__u64 better = ~mask_eq(taken, 0) & (mask_eq(set->way[i].stream, 0) | mask_lt(set->way[i].used, used));

		victim = choose(better, i, victim);
		taken = choose(better, set->way[i].stream, taken);
		used = choose(better, set->way[i].used, used);
	}
	return victim;
}

/* Lock held. Give way w to stream, with a window whose top is floor and every sequence up
 * to it seen: the next sequence above the floor is its first. */
static __always_inline void seal_way_take(struct seal_way *w, __u64 stream, __u64 floor)
{
	for (__u32 i = 0; i < SEAL_REPLAY_WORDS; i++)
		w->ring[i] = ~0ull;
	/* In floor's own word, the sequences above floor are unseen: 2 << 63 wraps to an all-ones mask. */
	w->ring[(floor >> 6) & (SEAL_REPLAY_WORDS - 1)] = (2ull << (floor & 63)) - 1;
	w->top = floor;
	w->stream = stream;
}

/* Is seq fresh on stream (a seal_stream_word())? With update (only after the tag verified),
 * record it, taking a way for a stream not in the table (evicting one when the set is full).
 * A global function: the verifier checks it once, not at each call in the ingress program. */
__noinline int seal_replay_check(__u64 id, __u64 seq, int update)
{
	__u32 zero = 0, set_id, group, way;
	struct seal_replay_salt *salt = bpf_map_lookup_elem(&seal_replay_salt, &zero);
	struct seal_floors *floors;
	struct seal_set *set;
	__u64 now, floor, *mine, *theirs, *evictions;
	int fresh, evicted = 0;

	if (!salt || seq == 0)
		return 0;
	set_id = seal_replay_set_of(id, salt);
	group = set_id % SEAL_REPLAY_FLOOR_GROUPS;
	set = bpf_map_lookup_elem(&seal_replay, &set_id);
	floors = bpf_map_lookup_elem(&seal_replay_floor, &group);
	if (!set || !floors)
		return 0;
	mine = seal_floor_cell(floors, seal_stream_key_slot(id));
	evictions = bpf_map_lookup_elem(&seal_replay_evictions, &zero);
	if (!mine || !evictions)
		return 0;
	now = update ? bpf_ktime_get_ns() : 0; /* no helper call under the lock */

	bpf_spin_lock(&set->lock);
	way = seal_way_of(set, id);
	if (way >= SEAL_REPLAY_WAYS) { /* not in its set: only above its floor */
		floor = *(volatile __u64 *)mine;
		if (seq <= floor || !update) {
			fresh = seq > floor;
			goto out;
		}
		way = seal_victim(set) & (SEAL_REPLAY_WAYS - 1);
		if (set->way[way].stream) {
			theirs = seal_floor_cell(floors, seal_stream_key_slot(set->way[way].stream));
			/* (NULL: a way no packet of this policy's pairs made, a foreign record: kept) */
			if (!theirs || !seal_floor_raise(theirs, set->way[way].top)) {
				fresh = 0;
				goto out;
			}
			evicted = 1;
		}
		seal_way_take(&set->way[way], id, floor);
	}
	way &= SEAL_REPLAY_WAYS - 1; /* for the verifier: the choice is not tracked */
	fresh = seal_window(&set->way[way], seq, update);
	if (fresh && update)
		set->way[way].used = now;
out:
	bpf_spin_unlock(&set->lock);
	*evictions += evicted; /* per CPU: no other writer */
	return fresh;
}

#endif
