/* The AEAD suite boundary of the sealing path. A suite header provides:
 *
 *   SEAL_SUITE               its enum seal_suite id, written to and required of the header
 *   struct seal_aead_key     its key state in a seal_keys slot
 *   struct seal_aead_scratch its per-CPU working memory (map memory), holding the wire
 *                            buffer: seal header | payload | tag | padding
 *   SEAL_AEAD_WIRE(s)        that buffer, SEAL_AEAD_WIRE_LEN bytes (a power of two)
 *   SEAL_AEAD_PAYLOAD(s)     the payload in it, SEAL_HDR_LEN bytes in
 *   SEAL_AEAD_MAX_PAYLOAD, SEAL_AEAD_MAX_AAD
 *   seal_aead_set_key(key, bytes, remove)          -> 0 or -errno (the install program)
 *   seal_aead_seal(s, key, nonce, aad, aad_len, n) -> 0, -ENOKEY, -errno: payload sealed
 *                                                     in place, the tag after it
 *   seal_aead_open(s, key, nonce, aad, aad_len, n) -> 0, -EBADMSG (tag), -ENOKEY, -errno
 *
 * This data plane is built with AES-128-CCM. */
#ifndef SEALNET_SEAL_AEAD_H
#define SEALNET_SEAL_AEAD_H

#include "seal_aead_ccm.h"

#endif
