/* The sealing path: seal on egress, verify and open on ingress, exactly as
 * docs/wire-format.md lays the packet out. Included by the generated
 * datapath after count() and domain_of(), with N_DOMAINS and
 * SEAL_AES_DRIVER defined. */
#ifndef SEAL_DATAPATH_H
#define SEAL_DATAPATH_H

#include "seal_ccm.h"

#define SEAL_VERSION           1
#define SEAL_SUITE_AES_128_CCM 1
#define SEAL_HDR_LEN           16
#define SEAL_OVERHEAD          (SEAL_HDR_LEN + CCM_TAG_LEN)
#define SEAL_NONCE_AT          3  /* header bytes 3..15 are the nonce */
#define SEAL_KEY_LEN           16 /* AES-128 */
#define SEAL_DOMAIN_SLOTS      (N_DOMAINS + 1) /* domain ids are 1-based; 0 is "none" */
#define SEAL_PAIRS             (SEAL_DOMAIN_SLOTS * SEAL_DOMAIN_SLOTS)
#define SEAL_EPOCH_SLOTS       2  /* current and next: epoch parity picks the slot */
#define SEAL_MAX_CPUS          256
#define SEAL_REPLAY_WORDS      16
#define SEAL_REPLAY_WINDOW     ((SEAL_REPLAY_WORDS - 1) * 64)
#define SEAL_MAX_STREAMS       16384
#define SEAL_L4_MAX            60
#define SEAL_AAD_FIXED         10 /* source, destination, zero, protocol */
#define SEAL_AAD_BUF           128 /* a power of two >= SEAL_AAD_FIXED + SEAL_L4_MAX + SEAL_HDR_LEN */
#define SEAL_WIRE_MAX          (SEAL_OVERHEAD + CCM_MAX_PAYLOAD)
#define SEAL_ENOENT            2  /* no such key slot */
#define SEAL_SCRATCH_EGRESS    0
#define SEAL_SCRATCH_INGRESS   1
#define IP_TOT_LEN_AT          (ETH_HLEN + 2)
#define IP_CSUM_AT             (ETH_HLEN + 10)
#define TCP_CSUM_IN_HDR        16
#define UDP_LEN_IN_HDR         4
#define UDP_CSUM_IN_HDR        6
#define TCP_DOFF_IN_HDR        12

_Static_assert(SEAL_AAD_FIXED + SEAL_L4_MAX + SEAL_HDR_LEN <= CCM_MAX_AAD, "AAD fits CCM");
_Static_assert(CCM_MAX_AAD <= SEAL_AAD_BUF, "AAD buffer holds the longest AAD");
_Static_assert(SEAL_WIRE_MAX + 4 <= CCM_WIRE_LEN, "wire[] holds a sealed segment and checksum padding");

#define SEAL_ALGO(mode) mode "(" SEAL_AES_DRIVER ")"

/* One direction's key at one epoch: the same AES key under ecb (CTR) and cbc (CBC-MAC). */
struct seal_key {
	struct bpf_crypto_ctx __kptr *ecb;
	struct bpf_crypto_ctx __kptr *cbc;
	__u32 epoch;
	__u32 installed;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SEAL_PAIRS * SEAL_EPOCH_SLOTS);
	__type(key, __u32); /* (src domain * SEAL_DOMAIN_SLOTS + dst domain) * 2 + epoch % 2 */
	__type(value, struct seal_key);
} seal_keys SEC(".maps");

/* The epoch egress seals with, per direction; written by the node agent. */
struct seal_tx {
	__u32 epoch;
	__u32 active;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SEAL_PAIRS);
	__type(key, __u32);
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

struct seal_scratch {
	struct ccm_scratch ccm;
	__u8 aad[SEAL_AAD_BUF];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* egress and ingress never share a buffer */
	__type(key, __u32);
	__type(value, struct seal_scratch);
} seal_scratch SEC(".maps");

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

/* ------------------------------------------------------------ key installation */

/* The context of seal_install_key, run by the node agent with BPF_PROG_TEST_RUN. */
struct seal_key_args {
	__u8 key[32]; /* SEAL_KEY_LEN used; zeroed by the program before it returns */
	__u32 slot;
	__u32 epoch;
	__u32 remove; /* 1: release the slot's contexts instead */
	__s32 err;
};

static __always_inline void seal_wipe(volatile __u8 *p, __u32 n)
{
	for (__u32 i = 0; i < n; i++)
		p[i] = 0;
}

static __always_inline struct bpf_crypto_ctx *seal_ctx_create(const char *algo, __u32 algo_len,
								  const __u8 *key, int *err)
{
	struct bpf_crypto_params params = { .type = "skcipher", .key_len = SEAL_KEY_LEN };
	struct bpf_crypto_ctx *ctx;

	__builtin_memcpy(params.algo, algo, algo_len);
	__builtin_memcpy(params.key, key, SEAL_KEY_LEN);
	ctx = bpf_crypto_ctx_create(&params, sizeof(params), err);
	seal_wipe((volatile __u8 *)params.key, SEAL_KEY_LEN);
	return ctx;
}

static __always_inline void seal_release(struct bpf_crypto_ctx *ctx)
{
	if (ctx)
		bpf_crypto_ctx_release(ctx);
}

SEC("syscall")
int seal_install_key(struct seal_key_args *args)
{
	static const char ecb_algo[] = SEAL_ALGO("ecb");
	static const char cbc_algo[] = SEAL_ALGO("cbc");
	struct bpf_crypto_ctx *ecb = NULL, *cbc = NULL;
	__u32 slot_id = args->slot;
	struct seal_key *slot;
	int err = 0;

	_Static_assert(sizeof(ecb_algo) <= 128 && sizeof(cbc_algo) <= 128, "algorithm names fit");
	slot = bpf_map_lookup_elem(&seal_keys, &slot_id);
	if (!slot) {
		args->err = -SEAL_ENOENT;
		goto out;
	}
	slot->installed = 0; /* egress and ingress skip the slot while it changes */
	if (!args->remove) {
		ecb = seal_ctx_create(ecb_algo, sizeof(ecb_algo), args->key, &err);
		if (ecb)
			cbc = seal_ctx_create(cbc_algo, sizeof(cbc_algo), args->key, &err);
		if (!ecb || !cbc) {
			seal_release(ecb);
			seal_release(cbc);
			args->err = err ? err : -CCM_EINVAL;
			goto out;
		}
	}
	seal_release(bpf_kptr_xchg(&slot->ecb, ecb));
	seal_release(bpf_kptr_xchg(&slot->cbc, cbc));
	slot->epoch = args->epoch & 0xff;
	slot->installed = !args->remove;
	args->err = 0;
out:
	seal_wipe((volatile __u8 *)args->key, sizeof(args->key));
	return 0;
}

/* ------------------------------------------------------------ shared pieces */

/* Where the parts of an IPv4 packet are, by the format's definition. */
struct seal_layout {
	__u32 hlen;     /* IPv4 header */
	__u32 tot_len;  /* IPv4 total length */
	__u32 l4_len;   /* L4 header left in clear: TCP doff*4, UDP 8, else 0 */
	__u32 payload;  /* bytes after the L4 header */
	__u32 payload_at; /* frame offset of those bytes */
	__u32 csum_at;  /* L4 checksum offset in the frame, 0 when not in clear */
	__u16 frag_off; /* host order */
	__u8 proto;
};

enum layout_status { LAYOUT_OK = 0, LAYOUT_BAD = 1 };

static __always_inline enum layout_status seal_layout(struct __sk_buff *skb, struct seal_layout *l)
{
	struct iphdr ip;
	__u8 doff;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return LAYOUT_BAD;
	l->hlen = (ip.ihl_version & 0x0F) * 4;
	l->tot_len = bpf_ntohs(ip.tot_len);
	l->frag_off = bpf_ntohs(ip.frag_off);
	l->proto = ip.protocol;
	l->csum_at = 0;
	l->l4_len = 0;
	if (l->hlen < IPV4_MIN_HLEN || l->tot_len < l->hlen || ETH_HLEN + l->tot_len > skb->len)
		return LAYOUT_BAD;
	if (l->proto == IPPROTO_UDP) {
		l->l4_len = sizeof(struct udphdr);
		l->csum_at = ETH_HLEN + l->hlen + UDP_CSUM_IN_HDR;
	} else if (l->proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + l->hlen + TCP_DOFF_IN_HDR, &doff, 1))
			return LAYOUT_BAD;
		l->l4_len = (doff >> 4) * 4;
		if (l->l4_len < sizeof(struct tcphdr))
			return LAYOUT_BAD;
		l->csum_at = ETH_HLEN + l->hlen + TCP_CSUM_IN_HDR;
	}
	if (l->tot_len < l->hlen + l->l4_len)
		return LAYOUT_BAD;
	l->payload = l->tot_len - l->hlen - l->l4_len;
	l->payload_at = ETH_HLEN + l->hlen + l->l4_len;
	return LAYOUT_OK;
}

/* AAD = source | destination | 0 | protocol | L4 header (checksum zeroed) | seal header.
 * The seal header must already be in wire[0..16). Returns the length, 0 on error. */
static __always_inline __u32 seal_build_aad(struct __sk_buff *skb, struct seal_scratch *s,
					    const struct seal_layout *l, const struct packet *p)
{
	__u32 saddr = bpf_htonl(p->src), daddr = bpf_htonl(p->dst);
	__u64 n = l->l4_len;

	__builtin_memcpy(&s->aad[0], &saddr, 4);
	__builtin_memcpy(&s->aad[4], &daddr, 4);
	s->aad[8] = 0;
	s->aad[9] = l->proto;
	ccm_opaque(n);
	if (n > SEAL_L4_MAX)
		return 0;
	if (n && bpf_skb_load_bytes(skb, ETH_HLEN + l->hlen, &s->aad[SEAL_AAD_FIXED], n))
		return 0;
	if (l->proto == IPPROTO_UDP) {
		s->aad[SEAL_AAD_FIXED + UDP_CSUM_IN_HDR] = 0;
		s->aad[SEAL_AAD_FIXED + UDP_CSUM_IN_HDR + 1] = 0;
	} else if (l->proto == IPPROTO_TCP) {
		s->aad[SEAL_AAD_FIXED + TCP_CSUM_IN_HDR] = 0;
		s->aad[SEAL_AAD_FIXED + TCP_CSUM_IN_HDR + 1] = 0;
	}
	for (__u32 i = 0; i < SEAL_HDR_LEN; i++)
		s->aad[(SEAL_AAD_FIXED + n + i) & (SEAL_AAD_BUF - 1)] = s->ccm.wire[i];
	return SEAL_AAD_FIXED + n + SEAL_HDR_LEN;
}

/* The 32-bit one's complement sum of wire[from .. from + len), zero padded to 4 bytes. */
static __always_inline __s64 seal_sum(struct seal_scratch *s, __u32 from, __u32 len)
{
	for (__u32 i = 0; i < 4; i++)
		s->ccm.wire[(from + len + i) & (CCM_WIRE_LEN - 1)] = 0;
	__u64 n = (len + 3) & ~3u;
	ccm_opaque(n);
	if (n > SEAL_WIRE_MAX + 4)
		return -1;
	if (from == 0)
		return bpf_csum_diff(NULL, 0, (__be32 *)s->ccm.wire, n, 0);
	return bpf_csum_diff(NULL, 0, (__be32 *)CCM_PAYLOAD(&s->ccm), n, 0);
}

/* Replace the L4 segment's length and payload in the IPv4 and L4 checksums.
 * Data changes go in without BPF_F_PSEUDO_HDR (a CHECKSUM_PARTIAL skb has
 * them summed later by the device), the length in the pseudo-header with it. */
static __always_inline int seal_fix_headers(struct __sk_buff *skb, const struct seal_layout *l,
					    __u32 old_sum, __u32 new_sum, __u32 new_tot)
{
	__be16 old_tot_be = bpf_htons(l->tot_len), new_tot_be = bpf_htons(new_tot);
	__be16 old_l4_be = bpf_htons(l->tot_len - l->hlen), new_l4_be = bpf_htons(new_tot - l->hlen);
	__u64 mangled = l->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_skb_store_bytes(skb, IP_TOT_LEN_AT, &new_tot_be, 2, 0) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_AT, old_tot_be, new_tot_be, 2))
		return -1;
	if (!l->csum_at)
		return 0;
	if (l->proto == IPPROTO_UDP &&
	    (bpf_skb_store_bytes(skb, ETH_HLEN + l->hlen + UDP_LEN_IN_HDR, &new_l4_be, 2, 0) ||
	     bpf_l4_csum_replace(skb, l->csum_at, old_l4_be, new_l4_be, mangled | 2)))
		return -1;
	if (bpf_l4_csum_replace(skb, l->csum_at, old_l4_be, new_l4_be, mangled | BPF_F_PSEUDO_HDR | 2) ||
	    bpf_l4_csum_replace(skb, l->csum_at, old_sum, new_sum, mangled | 4))
		return -1;
	return 0;
}

/* The installed key of (pair, epoch), or NULL. The caller reads its kptrs once each. */
static __always_inline struct seal_key *seal_key_of(__u32 pair, __u32 epoch)
{
	__u32 slot_id = pair * SEAL_EPOCH_SLOTS + (epoch & 1);
	struct seal_key *key = pair ? bpf_map_lookup_elem(&seal_keys, &slot_id) : NULL;

	if (!key || !key->installed || key->epoch != epoch)
		return NULL;
	return key;
}

static __always_inline __u32 seal_pair(const struct packet *p)
{
	__u32 src = domain_of(p->src), dst = domain_of(p->dst);

	if (!src || !dst || src >= SEAL_DOMAIN_SLOTS || dst >= SEAL_DOMAIN_SLOTS)
		return 0; /* pair 0 is never a valid pair: domain ids start at 1 */
	return src * SEAL_DOMAIN_SLOTS + dst;
}

/* ------------------------------------------------------------ egress */

static __always_inline __u32 seal_packet(struct __sk_buff *skb, const struct packet *p)
{
	__u32 zero = 0, scratch_key = SEAL_SCRATCH_EGRESS, pair, epoch, mtu_len = 0;
	struct seal_layout l;

	pair = seal_pair(p);
	if (!pair)
		return V_SEAL_NO_KEY_DROP;
	struct seal_tx *tx = bpf_map_lookup_elem(&seal_tx, &pair);
	if (!tx || !tx->active)
		return V_SEAL_NO_KEY_DROP;
	epoch = tx->epoch & 0xff;
	struct seal_key *key = seal_key_of(pair, epoch);
	if (!key)
		return V_SEAL_NO_KEY_DROP;
	struct bpf_crypto_ctx *ecb = key->ecb, *cbc = key->cbc; /* each read once: may turn NULL */
	if (!ecb || !cbc)
		return V_SEAL_NO_KEY_DROP;
	struct seal_config *cfg = bpf_map_lookup_elem(&seal_config, &zero);
	if (!cfg || !cfg->sender)
		return V_SEAL_NO_KEY_DROP;
	__u32 sender = cfg->sender;

	if (seal_layout(skb, &l) != LAYOUT_OK)
		return V_SEAL_MALFORMED_DROP;
	if (l.frag_off & (IP_MF | IP_OFFSET))
		return V_SEAL_TOO_BIG_DROP; /* the datagram outgrew the route MTU: never sealed in pieces */
	/* A GSO super-packet would be cut into segments after TC: never seal one. */
	if (skb->gso_size || l.payload > CCM_MAX_PAYLOAD || bpf_check_mtu(skb, 0, &mtu_len, SEAL_OVERHEAD, 0))
		return V_SEAL_TOO_BIG_DROP;

	__u32 cpu = bpf_get_smp_processor_id();
	__u64 *counter = bpf_map_lookup_elem(&seal_seq, &zero);
	struct seal_scratch *s = bpf_map_lookup_elem(&seal_scratch, &scratch_key);
	if (cpu >= SEAL_MAX_CPUS || !counter || !s)
		return V_INTERNAL_DROP;
	/* Atomic even on a per-CPU value: a nested run on this CPU still gets its own. */
	__u64 seq = __sync_fetch_and_add(counter, 1) + 1;

	__be32 sender_be = bpf_htonl(sender);
	__be64 seq_be = __builtin_bswap64(seq);
	s->ccm.wire[0] = SEAL_VERSION;
	s->ccm.wire[1] = SEAL_SUITE_AES_128_CCM;
	s->ccm.wire[2] = epoch;
	__builtin_memcpy(&s->ccm.wire[3], &sender_be, 4);
	s->ccm.wire[7] = cpu;
	__builtin_memcpy(&s->ccm.wire[8], &seq_be, 8);

	__u64 n = l.payload;
	ccm_opaque(n);
	if (n > CCM_MAX_PAYLOAD)
		return V_SEAL_TOO_BIG_DROP;
	if (n && bpf_skb_load_bytes(skb, l.payload_at, CCM_PAYLOAD(&s->ccm), n))
		return V_SEAL_MALFORMED_DROP;
	__s64 old_sum = seal_sum(s, CCM_WIRE_HEAD, n);

	/* The receiver sees the UDP length of the sealed packet: authenticate that one. */
	__u32 aad_len = seal_build_aad(skb, s, &l, p);
	if (!aad_len || old_sum < 0)
		return V_INTERNAL_DROP;
	if (l.proto == IPPROTO_UDP) {
		__be16 ulen = bpf_htons(l.tot_len - l.hlen + SEAL_OVERHEAD);
		__builtin_memcpy(&s->aad[SEAL_AAD_FIXED + UDP_LEN_IN_HDR], &ulen, 2);
	}
	if (ccm_seal(&s->ccm, ecb, cbc, &s->ccm.wire[SEAL_NONCE_AT], s->aad, aad_len, n))
		return V_INTERNAL_DROP;
	__s64 new_sum = seal_sum(s, 0, n + SEAL_OVERHEAD);
	if (new_sum < 0)
		return V_INTERNAL_DROP;

	__u64 wire_len = n + SEAL_OVERHEAD;
	ccm_opaque(wire_len);
	if (wire_len > SEAL_WIRE_MAX)
		return V_INTERNAL_DROP;
	if (bpf_skb_change_tail(skb, ETH_HLEN + l.tot_len + SEAL_OVERHEAD, 0) ||
	    bpf_skb_store_bytes(skb, l.payload_at, s->ccm.wire, wire_len, 0) ||
	    seal_fix_headers(skb, &l, old_sum, new_sum, l.tot_len + SEAL_OVERHEAD))
		return V_INTERNAL_DROP;
	return V_SEAL_SENT;
}

/* Count the verdict once and turn it into a TC action. */
static __always_inline int seal_action(__u32 dir, __u32 rule, __u32 verdict)
{
	count(dir, rule, verdict);
	return verdict == V_SEAL_SENT ? TC_ACT_OK : TC_ACT_SHOT;
}

static __always_inline int seal_egress(struct __sk_buff *skb, const struct packet *p, __u32 rule)
{
	return seal_action(DIR_EGRESS, rule, seal_packet(skb, p));
}

/* ------------------------------------------------------------ ingress */

/* RFC 4303 / WireGuard window; call with w->lock held. Returns 1 when seq is fresh. */
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
			w->ring[(current + i) & (SEAL_REPLAY_WORDS - 1)] &= ~ccm_mask(i, advance + 1);
		w->top = seq;
	}
	if (update)
		w->ring[word] |= bit;
	return 1;
}

static __always_inline int seal_replay_check(struct seal_stream *stream, __u64 seq, int update)
{
	struct seal_window *w = bpf_map_lookup_elem(&seal_replay, stream);
	int fresh;

	if (!w) {
		if (!update)
			return seq != 0;
		struct seal_window empty = {};
		bpf_map_update_elem(&seal_replay, stream, &empty, BPF_NOEXIST);
		w = bpf_map_lookup_elem(&seal_replay, stream);
		if (!w)
			return 0; /* stream table full: fail closed */
	}
	bpf_spin_lock(&w->lock);
	fresh = seal_window(w, seq, update);
	bpf_spin_unlock(&w->lock);
	return fresh;
}

static __always_inline __u32 open_packet(struct __sk_buff *skb, const struct packet *p)
{
	__u32 scratch_key = SEAL_SCRATCH_INGRESS, pair;
	struct seal_layout l;
	__u8 head[SEAL_HDR_LEN];

	if (seal_layout(skb, &l) != LAYOUT_OK)
		return V_SEAL_MALFORMED_DROP;
	if (l.payload < SEAL_OVERHEAD || bpf_skb_load_bytes(skb, l.payload_at, head, sizeof(head)) ||
	    head[0] != SEAL_VERSION)
		return V_SEAL_PLAINTEXT_DROP;
	if ((l.frag_off & (IP_MF | IP_OFFSET)) || head[1] != SEAL_SUITE_AES_128_CCM ||
	    l.payload > SEAL_WIRE_MAX)
		return V_SEAL_MALFORMED_DROP;

	pair = seal_pair(p);
	struct seal_key *key = seal_key_of(pair, head[2]);
	if (!key)
		return V_SEAL_UNKNOWN_KEY_DROP;
	struct bpf_crypto_ctx *ecb = key->ecb, *cbc = key->cbc;
	if (!ecb || !cbc)
		return V_SEAL_UNKNOWN_KEY_DROP;

	__be32 sender_be;
	__be64 seq_be;
	__builtin_memcpy(&sender_be, &head[3], 4);
	__builtin_memcpy(&seq_be, &head[8], 8);
	__u64 seq = __builtin_bswap64(seq_be);
	struct seal_stream stream = {
		.sender = bpf_ntohl(sender_be), .pair = pair, .epoch = head[2], .cpu = head[7],
	};
	if (!seal_replay_check(&stream, seq, 0))
		return V_SEAL_REPLAY_DROP;

	struct seal_scratch *s = bpf_map_lookup_elem(&seal_scratch, &scratch_key);
	if (!s)
		return V_INTERNAL_DROP;
	__u64 wire_len = l.payload;
	ccm_opaque(wire_len);
	if (wire_len < SEAL_OVERHEAD || wire_len > SEAL_WIRE_MAX)
		return V_SEAL_MALFORMED_DROP;
	if (bpf_skb_load_bytes(skb, l.payload_at, s->ccm.wire, wire_len))
		return V_SEAL_MALFORMED_DROP;
	__u32 n = wire_len - SEAL_OVERHEAD;
	__s64 old_sum = seal_sum(s, 0, wire_len);
	__u32 aad_len = seal_build_aad(skb, s, &l, p);
	if (!aad_len || old_sum < 0)
		return V_INTERNAL_DROP;
	int err = ccm_open(&s->ccm, ecb, cbc, &s->ccm.wire[SEAL_NONCE_AT], s->aad, aad_len, n);
	if (err == -CCM_EBADMSG)
		return V_SEAL_BAD_TAG_DROP;
	if (err)
		return V_INTERNAL_DROP;
	if (!seal_replay_check(&stream, seq, 1))
		return V_SEAL_REPLAY_DROP;

	__s64 new_sum = seal_sum(s, CCM_WIRE_HEAD, n);
	if (new_sum < 0)
		return V_INTERNAL_DROP;
	__u64 plain_len = n;
	ccm_opaque(plain_len);
	if (plain_len > CCM_MAX_PAYLOAD)
		return V_INTERNAL_DROP;
	if ((plain_len && bpf_skb_store_bytes(skb, l.payload_at, CCM_PAYLOAD(&s->ccm), plain_len, 0)) ||
	    bpf_skb_change_tail(skb, ETH_HLEN + l.tot_len - SEAL_OVERHEAD, 0) ||
	    seal_fix_headers(skb, &l, old_sum, new_sum, l.tot_len - SEAL_OVERHEAD))
		return V_INTERNAL_DROP;
	return V_SEAL_SENT;
}

static __always_inline int seal_ingress(struct __sk_buff *skb, const struct packet *p, __u32 rule)
{
	return seal_action(DIR_INGRESS, rule, open_packet(skb, p));
}

#endif /* SEAL_DATAPATH_H */
