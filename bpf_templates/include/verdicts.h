/* What happened to a frame (one counter each: the drop reasons), a rule's
 * action, the hook. contracts/abi.py holds the same names and values for the
 * Python side; tests/test_abi.py checks them against the object's BTF. */
#ifndef SEALNET_VERDICTS_H
#define SEALNET_VERDICTS_H

#include "kernel_types.h"

enum sealnet_verdict {
	V_ALLOW_PASS = 0,          /* allow rule: passed in plaintext */
	V_DENY_DROP = 1,           /* deny rule (or default deny) */
	V_SEAL_SENT = 2,           /* seal rule: sealed (egress) or verified and opened (ingress) */
	V_SEAL_NO_KEY_DROP = 3,    /* seal rule, egress, no sealing key: fail closed */
	V_SEAL_PLAINTEXT_DROP = 4, /* seal rule, ingress, arrived in plaintext */
	V_MALFORMED_DROP = 5,      /* short frame, bad ihl/version/length, truncated L4 */
	V_ARP_PASS = 6,            /* ARP: IPv4 needs it, carries no IP payload */
	V_IPV6_DROP = 7,           /* the policy is IPv4 only: IPv6 would bypass it */
	V_OTHER_L3_DROP = 8,       /* any other ethertype (VLAN, MPLS, ...) */
	V_FRAGMENT_DROP = 9,       /* non-first fragment whose decision depends on the port */
	V_INTERNAL_DROP = 10,      /* table lookup out of range, helper failure: fail closed */
	V_SEAL_BAD_TAG_DROP = 11,  /* ingress: the AEAD tag does not verify */
	V_SEAL_UNKNOWN_KEY_DROP = 12, /* ingress: no key for this domain pair and epoch */
	V_SEAL_REPLAY_DROP = 13,   /* ingress: sequence seen or below the window */
	V_SEAL_MALFORMED_DROP = 14, /* a seal header with a bad suite, a sealed fragment, bad lengths */
	V_SEAL_TOO_BIG_DROP = 15,  /* egress: a fragment, or the sealed packet would exceed the MTU */
	V_ICMP_QUOTE_DROP = 16,    /* egress: an ICMP error in clear that quotes a sealed flow's packet */
	V_COUNT = 17,
};

enum sealnet_action { ACT_DENY = 0, ACT_ALLOW = 1, ACT_SEAL = 2 };
enum sealnet_dir { DIR_EGRESS = 0, DIR_INGRESS = 1 };

#define RULE_NONE 0xFFFFFFFFu /* last_decision.rule when no rule classified the frame */

/* The TC action of a verdict: the *_PASS verdicts and a sealed or opened packet go on. */
static __always_inline int verdict_action(enum sealnet_verdict verdict)
{
	return verdict == V_ALLOW_PASS || verdict == V_ARP_PASS || verdict == V_SEAL_SENT ? TC_ACT_OK : TC_ACT_SHOT;
}

#endif
