/* The sealing path's key maps and their slot formulas, written by the node
 * agent (runtime/seal_keys.py through contracts/abi.py, which holds the same
 * names, layouts and formulas). */
#ifndef SEALNET_SEAL_MAPS_H
#define SEALNET_SEAL_MAPS_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include "seal_hdr.h"
#include "seal_aead.h"

#ifndef N_DOMAINS
#error "N_DOMAINS (the policy's number of domains) must be defined"
#endif

enum seal_key_slots {
	/* previous, current and next, and one free: epoch % 4 picks the slot, so a
	 * rotation installs next without touching the previous one receivers still open */
	SEAL_EPOCH_SLOTS = 4,
	/* A sequence is generation << 32 | count (docs/wire-format.md, "Nonce
	 * uniqueness"): the node agent reserves the generation, egress counts. */
	SEAL_SEQ_COUNT_BITS = 32,
	SEAL_SEQ_MARGIN_BITS = 20, /* no count within 2^20 of the generation's end is sealed */
};

#define SEAL_SEQ_COUNT_MASK ((1ull << SEAL_SEQ_COUNT_BITS) - 1)
#define SEAL_SEQ_COUNT_END  ((1ull << SEAL_SEQ_COUNT_BITS) - (1ull << SEAL_SEQ_MARGIN_BITS))

#define SEAL_DOMAIN_SLOTS (N_DOMAINS + 1) /* domain ids are 1-based; 0 is "in no domain" */
#define SEAL_PAIRS        (SEAL_DOMAIN_SLOTS * SEAL_DOMAIN_SLOTS)

/* One direction's key at one epoch. */
/* One direction's key at one epoch: epoch and installed first, at the same
 * offsets whatever the suite's key state after them. */
struct seal_key {
	__u32 epoch;
	__u32 installed; /* 0 while the slot changes: egress and ingress skip it */
	struct seal_aead_key aead; /* the suite's key state: the kernel's only */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SEAL_PAIRS * SEAL_EPOCH_SLOTS);
	__type(key, __u32); /* seal_key_slot(pair, epoch) */
	__type(value, struct seal_key);
} seal_keys SEC(".maps");

/* The epoch egress seals with, per pair. */
struct seal_tx {
	__u32 epoch;
	__u32 active;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SEAL_PAIRS);
	__type(key, __u32); /* seal_pair() */
	__type(value, struct seal_tx);
} seal_tx SEC(".maps");

struct seal_config {
	__u32 sender; /* 0: no sender id yet, so nothing is sealed */
	__u32 reserved;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct seal_config);
} seal_config SEC(".maps");

/* The per-CPU sequence counters of this load's sender streams. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seal_seq SEC(".maps");

/* The pair index of (source domain, destination domain); 0 is never a valid pair. */
static __always_inline __u32 seal_pair(__u32 src_domain, __u32 dst_domain)
{
	if (!src_domain || !dst_domain || src_domain >= SEAL_DOMAIN_SLOTS || dst_domain >= SEAL_DOMAIN_SLOTS)
		return 0;
	return src_domain * SEAL_DOMAIN_SLOTS + dst_domain;
}

static __always_inline __u32 seal_key_slot(__u32 pair, __u32 epoch)
{
	return pair * SEAL_EPOCH_SLOTS + epoch % SEAL_EPOCH_SLOTS;
}

/* The installed key of (pair, epoch), or NULL. */
static __always_inline struct seal_key *seal_key_of(__u32 pair, __u32 epoch)
{
	__u32 slot_id = seal_key_slot(pair, epoch);
	struct seal_key *key = pair ? bpf_map_lookup_elem(&seal_keys, &slot_id) : NULL;

	if (!key || !key->installed || key->epoch != epoch)
		return NULL;
	return key;
}

#endif
