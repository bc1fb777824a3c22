/* The sealing path, for the generated data plane (docs/wire-format.md):
 *
 *   enum sealnet_verdict seal_egress(skb, packet, src_domain, dst_domain);
 *   enum sealnet_verdict seal_ingress(skb, packet, src_domain, dst_domain);
 *
 * and the key-installation program. The includer defines the policy's
 * N_DOMAINS and SEAL_AES_DRIVER, counts the verdict and turns it into a TC
 * action (verdict_action()). One header per concern:
 *   seal_hdr.h     the header format     seal_maps.h    key maps, slot formulas
 *   seal_aead.h    the AEAD suite        seal_keys.h    key installation
 *   seal_buffer.h  scratch, AAD, sums    seal_replay.h  replay windows
 *   seal_egress.h  seal                  seal_ingress.h verify and open
 *   seal_replay_forget.h  retiring a released epoch's windows */
#ifndef SEALNET_SEAL_DATAPATH_H
#define SEALNET_SEAL_DATAPATH_H

#include "seal_keys.h"
#include "seal_egress.h"
#include "seal_ingress.h"
#include "seal_replay_forget.h"

/* Seal (egress) or open (ingress), then wipe that direction's scratch buffer. */
static __always_inline enum sealnet_verdict seal_path(struct __sk_buff *skb, const struct packet *p,
						      enum sealnet_dir dir, __u32 src_domain, __u32 dst_domain)
{
	enum sealnet_verdict verdict = dir == DIR_EGRESS ? seal_egress(skb, p, src_domain, dst_domain) :
							    seal_ingress(skb, p, src_domain, dst_domain);
	struct seal_scratch *s = seal_scratch_of(dir);

	if (s)
		seal_scratch_wipe(s);
	return verdict;
}

#endif
