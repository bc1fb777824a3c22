/* The bpf_crypto kfuncs (kernel >= 6.10) and the map that holds their contexts.
 * Declared here rather than taken from a vmlinux.h dumped on the build machine. */
#ifndef SEAL_CRYPTO_H
#define SEAL_CRYPTO_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Opaque in the kernel; declared as a struct (not a forward declaration) because
 * libbpf matches kfunc prototypes against the kernel BTF kind by kind. */
struct bpf_crypto_ctx {};

struct bpf_crypto_params {
	char type[14];
	__u8 reserved[2];
	char algo[128];
	__u8 key[256];
	__u32 key_len;
	__u32 authsize;
};

extern struct bpf_crypto_ctx *bpf_crypto_ctx_create(const struct bpf_crypto_params *params,
						    __u32 params__sz, int *err) __ksym;
extern void bpf_crypto_ctx_release(struct bpf_crypto_ctx *ctx) __ksym;
extern int bpf_crypto_encrypt(struct bpf_crypto_ctx *ctx, const struct bpf_dynptr *src,
			      const struct bpf_dynptr *dst, const struct bpf_dynptr *siv__nullable) __ksym;

/* One slot per cipher context; a context lives in the map as a referenced kptr. */
struct crypto_slot {
	struct bpf_crypto_ctx __kptr *ctx;
};

#endif /* SEAL_CRYPTO_H */
