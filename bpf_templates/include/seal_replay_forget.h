/* Retiring an epoch's windows: a SEC("syscall") program the node agent runs with
 * BPF_PROG_TEST_RUN when a rotation's grace period releases keys. User space
 * cannot clear ways itself: it would write a whole set back over the windows
 * other streams of the set advanced meanwhile. */
#ifndef SEALNET_SEAL_REPLAY_FORGET_H
#define SEALNET_SEAL_REPLAY_FORGET_H

#include <linux/errno.h>
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include "seal_maps.h"
#include "seal_replay.h"

/* The program's context (contracts/abi.py SEAL_FORGET_ARGS). */
struct seal_forget_args {
	__u32 pair;
	__u32 epoch;   /* the released key's epoch (its low 8 bits name streams) */
	__u32 removed; /* out: streams removed */
	__s32 err;     /* out: 0 or a negative errno */
};

struct seal_forget_walk {
	__u32 pair;
	__u32 epoch;
	__u32 slot; /* seal_key_slot(pair, epoch) */
	__u32 removed;
};

static long seal_forget_set(__u64 index, void *ctx)
{
	struct seal_forget_walk *walk = ctx;
	__u32 set_id = index;
	struct seal_set *set = bpf_map_lookup_elem(&seal_replay, &set_id);

	if (!set)
		return 1;
	bpf_spin_lock(&set->lock);
	for (__u32 i = 0; i < SEAL_REPLAY_WAYS; i++) {
		__u64 stream = set->way[i].stream;

		if (stream && ((stream >> 32) & 0xffff) == walk->pair && ((stream >> 48) & 0xff) == walk->epoch) {
			set->way[i].stream = 0;
			set->way[i].used = 0;
			set->way[i].top = 0;
			walk->removed++;
		}
	}
	bpf_spin_unlock(&set->lock);
	return 0;
}

static long seal_forget_floor(__u64 index, void *ctx)
{
	struct seal_forget_walk *walk = ctx;
	__u32 group = index;
	__u64 slot = walk->slot;
	struct seal_floors *floors = bpf_map_lookup_elem(&seal_replay_floor, &group);

	barrier_var(slot); /* checked here, where it indexes, not where clang would move the check */
	if (!floors || slot >= SEAL_KEY_SLOTS)
		return 1;
	floors->top[slot] = 0;
	return 0;
}

/* The key of (pair, epoch) is gone, so none of its packets opens again: its windows and
 * its floors go too (a key slot holds one epoch at a time). */
SEC("syscall")
int seal_replay_forget(struct seal_forget_args *args)
{
	struct seal_forget_walk walk = { .pair = args->pair, .epoch = args->epoch & SEAL_EPOCH_MASK };

	walk.slot = seal_key_slot(walk.pair, walk.epoch);

	if (!walk.pair || walk.pair >= SEAL_PAIRS) {
		args->err = -EINVAL;
		return 0;
	}
	bpf_loop(SEAL_REPLAY_SETS, seal_forget_set, &walk, 0);
	bpf_loop(SEAL_REPLAY_FLOOR_GROUPS, seal_forget_floor, &walk, 0);
	args->removed = walk.removed;
	args->err = 0;
	return 0;
}

#endif
