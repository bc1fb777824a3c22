/* The AEAD suite boundary of the sealing path. A suite header provides:
 *
 *   SEAL_SUITE               its enum seal_suite id, written to and required of the header
 *   struct seal_aead_key     its key state in a seal_keys slot
 *   struct seal_aead_scratch its per-CPU working memory (map memory), holding the wire
 *                            buffer: seal header | payload | tag | padding
 *   SEAL_AEAD_WIRE(s)        that buffer, SEAL_AEAD_WIRE_LEN bytes (a power of two)
 *   SEAL_AEAD_PAYLOAD(s)     the payload in it, SEAL_HDR_LEN bytes in
 *   SEAL_AEAD_MAX_PAYLOAD, SEAL_AEAD_MAX_AAD
 *   SEAL_AEAD_MAX_SEQ        the last sequence whose nonce the suite can form
 *   seal_aead_set_key(key, bytes, remove)          -> 0 or -errno (the install program)
 *   seal_aead_seal(s, key, nonce, aad, aad_len, n) -> 0, -ENOKEY, -errno: payload sealed
 *                                                     in place, the tag after it
 *   seal_aead_open(s, key, nonce, aad, aad_len, n) -> 0, -EBADMSG (tag), -ENOKEY, -errno
 *
 * The suite is the policy's `cipher`, compiled in (so measured): the
 * renderer defines SEAL_CIPHER_<name of enum seal_suite>; AES-128-CCM
 * without one. */
#ifndef SEALNET_SEAL_AEAD_H
#define SEALNET_SEAL_AEAD_H

#if defined(SEAL_CIPHER_CHACHA20_POLY1305)
#include "seal_aead_chacha.h"
#else
#include "seal_aead_ccm.h"
#endif

#endif
