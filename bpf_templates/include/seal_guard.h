/* The bypass guard: BPF LSM programs that keep a sealing data plane's network
 * namespace from transmitting past TC egress (docs/wire-format.md, "What the
 * data plane cannot see"). TC egress seals; a frame that skips it leaves in
 * plaintext and is counted nowhere. Two socket features skip it:
 *
 *   PACKET_QDISC_BYPASS   an AF_PACKET socket hands frames to the driver
 *                         (guard_sockopt refuses the option);
 *   AF_XDP                an XSK transmits from its ring straight to the
 *                         driver (guard_xsk_sock refuses creating one,
 *                         guard_xsk_bind binding one made before the load).
 *
 * Scope: the namespace the socket belongs to (its sk's net), not the calling
 * task's, so a socket made in the node's namespace and handed to, or used
 * from, another namespace is still refused. The loader writes that namespace's
 * cookie into guard_netns at load and freezes the map; each load attaches its
 * own links, so loads in several namespaces each guard their own, and
 * unloading one leaves the others' links in place.
 *
 * SEC("?lsm/..."): libbpf loads these only when asked (set_autoload), so
 * whatever else loads this object (translation validation, tests, benchmarks)
 * needs no BPF LSM; the node loader asks when it guards. */
#ifndef SEALNET_SEAL_GUARD_H
#define SEALNET_SEAL_GUARD_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h> /* BPF_PROG: the hook's arguments from the u64 context */
#include "kernel_sock.h"

#define GUARD_SOL_PACKET          263 /* <linux/socket.h> */
#define GUARD_PACKET_QDISC_BYPASS 20  /* <linux/if_packet.h> */
#define GUARD_AF_XDP              44  /* <linux/socket.h> */
#define GUARD_MAX_ERRNO           4095

/* The cookie of the namespace this load guards, at key 0 (0: none, before the
 * loader writes it). Written once by the loader, then frozen. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} guard_netns SEC(".maps");

/* Does `sock` belong to the namespace this load guards? */
static __always_inline int guarded(const struct socket *sock)
{
	__u32 zero = 0;
	__u64 *cookie = bpf_map_lookup_elem(&guard_netns, &zero);
	struct sock *sk = sock->sk;

	if (!cookie || !*cookie || !sk)
		return 0;
	return sk->__sk_common.skc_net.net->net_cookie == *cookie;
}

/* The verdict an earlier program on the hook reached (BPF LSM programs of one hook chain their
 * return values: `ret` is the one so far). A refusal stands; clamped to what an LSM hook may
 * return, so the verifier can prove the program's return range. */
static __always_inline int earlier(int ret)
{
	if (ret > 0 || ret < -GUARD_MAX_ERRNO)
		return -EPERM;
	return ret;
}

/* setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS): refused, whatever the value. */
SEC("?lsm/socket_setsockopt")
int BPF_PROG(guard_sockopt, struct socket *sock, int level, int optname, int ret)
{
	if (ret)
		return earlier(ret);
	if (level == GUARD_SOL_PACKET && optname == GUARD_PACKET_QDISC_BYPASS && guarded(sock))
		return -EPERM;
	return 0;
}

/* socket(AF_XDP, ...): refused once the socket exists, so its namespace is known. */
SEC("?lsm/socket_post_create")
int BPF_PROG(guard_xsk_sock, struct socket *sock, int family, int type, int protocol, int kern, int ret)
{
	if (ret)
		return earlier(ret);
	if (family == GUARD_AF_XDP && guarded(sock))
		return -EPERM;
	return 0;
}

/* bind() of an AF_XDP socket created before the load: refused (an XSK cannot
 * transmit before it is bound to a device of its own namespace). */
SEC("?lsm/socket_bind")
int BPF_PROG(guard_xsk_bind, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	struct sock *sk = sock->sk;

	if (ret)
		return earlier(ret);
	if (sk && sk->__sk_common.skc_family == GUARD_AF_XDP && guarded(sock))
		return -EPERM;
	return 0;
}

#endif
