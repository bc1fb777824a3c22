/* The kernel's socket and network-namespace structs, as far as the bypass
 * guard (seal_guard.h) reads them. These are not layouts: every member access
 * through them is recorded by clang as a CO-RE relocation (type and member
 * name, preserve_access_index), and libbpf rewrites the offsets against the
 * running kernel's BTF at load. So the build needs no vmlinux.h from the
 * builder's kernel (kernel_types.h), and the declarations need only the right
 * names and member types, not the kernel's order or padding. */
#ifndef SEALNET_KERNEL_SOCK_H
#define SEALNET_KERNEL_SOCK_H

#include <linux/types.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct net {
	__u64 net_cookie; /* unique per namespace, never reused: SO_NETNS_COOKIE */
};

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	unsigned short skc_family;
	possible_net_t skc_net;
};

struct sock {
	struct sock_common __sk_common;
};

struct socket {
	struct sock *sk;
};

struct sockaddr;

#pragma clang attribute pop

#endif
