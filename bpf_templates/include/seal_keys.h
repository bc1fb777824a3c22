/* Key installation: a SEC("syscall") program the node agent runs with
 * BPF_PROG_TEST_RUN, so the cipher contexts are made by the measured object
 * (with its compiled-in AES driver), never by user space. */
#ifndef SEALNET_SEAL_KEYS_H
#define SEALNET_SEAL_KEYS_H

#include <linux/errno.h>
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include "bits.h"
#include "seal_hdr.h"
#include "seal_aead.h"
#include "seal_maps.h"

/* The program's context (contracts/abi.py SEAL_KEY_ARGS). */
struct seal_key_args {
	__u8 key[32]; /* SEAL_AEAD_KEY_LEN used; zeroed by the program before it returns */
	__u32 slot;   /* seal_key_slot(pair, epoch) */
	__u32 epoch;
	__u32 remove; /* 1: release the slot's key instead */
	__s32 err;    /* out: 0 or a negative errno */
};

_Static_assert(SEAL_AEAD_KEY_LEN <= sizeof(((struct seal_key_args *)0)->key), "a suite's key fits");

SEC("syscall")
int seal_install_key(struct seal_key_args *args)
{
	__u32 slot_id = args->slot;
	struct seal_key *slot;
	int err;

	slot = bpf_map_lookup_elem(&seal_keys, &slot_id);
	if (!slot) {
		args->err = -ENOENT;
		goto out;
	}
	slot->installed = 0; /* egress and ingress skip the slot while it changes */
	err = seal_aead_set_key(&slot->aead, args->key, args->remove);
	if (err) {
		args->err = err;
		goto out;
	}
	slot->epoch = args->epoch & SEAL_EPOCH_MASK;
	slot->installed = !args->remove;
	args->err = 0;
out:
	wipe((volatile __u8 *)args->key, sizeof(args->key));
	return 0;
}

#endif
