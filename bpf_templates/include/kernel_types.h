/* The few kernel types the data plane needs, written out here instead of a
 * vmlinux.h dumped from the build machine: the build must not depend on the
 * builder's kernel. Only stable UAPI layouts (wire formats, __sk_buff). */
#ifndef SEALNET_KERNEL_TYPES_H
#define SEALNET_KERNEL_TYPES_H

#include <stddef.h>       /* offsetof */
#include <linux/types.h>
#include <linux/bpf.h> /* UAPI: struct __sk_buff, map types, helper ids */

#define ETH_ALEN      6
#define ETH_HLEN      14
#define ETH_P_IP      0x0800
#define ETH_P_ARP     0x0806
#define ETH_P_IPV6    0x86DD

#define IPPROTO_ICMP  1
#define IPPROTO_TCP   6
#define IPPROTO_UDP   17

#define IP_MF         0x2000 /* more fragments */
#define IP_OFFSET     0x1FFF /* fragment offset, 8-byte units */

#define TC_ACT_OK     0
#define TC_ACT_SHOT   2

struct ethhdr {
	__u8 h_dest[ETH_ALEN];
	__u8 h_source[ETH_ALEN];
	__be16 h_proto;
} __attribute__((packed));

struct iphdr {
	__u8 ihl_version; /* low nibble ihl, high nibble version (little-endian bitfield order avoided) */
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

struct tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u16 flags; /* data offset (high nibble of the first byte), reserved, flags */
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

struct udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__sum16 check;
};

#endif
