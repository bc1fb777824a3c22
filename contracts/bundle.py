"""The bundle: one file holding manifest, BPF object and the authority's signature.

Layout (all integers big-endian):

    offset  size  field
    0       8     magic "SEALNETB"
    8       2     format version (1)
    10      2     flags (0)
    12      4     manifest length M (<= 64 MiB)
    16      4     object length O (<= 64 MiB)
    20      2     signature algorithm (1 = Ed25519)
    22      2     signature length (64)
    24      M     manifest, canonical JSON
    24+M    O     object, a BPF ELF file
    24+M+O  64    Ed25519 signature over "sealnet-bundle-v1\\0" || bytes 0 .. 24+M+O

The file ends exactly there. The node verifies the signature, checks that
the manifest describes exactly this object (hash, map layouts), recomputes
the measurement from the bytes it holds, and loads those same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sealnet.contracts import abi
from sealnet.contracts.manifest import MANIFEST_FORMAT, SUITE_BY_CIPHER, canonical, map_layouts
from sealnet.contracts.measure import MeasureError, measure
from sealnet.contracts.signing import verify as verify_signature

MAGIC = b"SEALNETB"
FORMAT_VERSION = 1
HEADER = struct.Struct(">8sHHIIHH")
SIG_ED25519 = 1
SIG_LEN = 64
MAX_PART = 64 * 1024 * 1024
SIGNING_CONTEXT = b"sealnet-bundle-v1\0"


class BundleError(Exception):
    """A bundle refused, with a one-line reason naming the field at fault."""


@dataclass(frozen=True)
class Bundle:
    """A parsed bundle whose signature has NOT been checked."""

    manifest: dict[str, Any]
    manifest_bytes: bytes
    object_bytes: bytes
    signature: bytes
    signed_bytes: bytes

    @property
    def measurement(self) -> str:
        return measure(self.object_bytes, self.manifest_bytes)


@dataclass(frozen=True)
class VerifiedBundle:
    manifest: dict[str, Any]
    object_bytes: bytes
    measurement: str


def pack(manifest: dict[str, Any], object_bytes: bytes, key: Ed25519PrivateKey) -> bytes:
    manifest_bytes = canonical(manifest)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(manifest_bytes), len(object_bytes), SIG_ED25519, SIG_LEN)
    body = header + manifest_bytes + object_bytes
    return body + key.sign(SIGNING_CONTEXT + body)


def parse(data: bytes) -> Bundle:
    """Split and bounds-check a bundle (no trust decision is made here)."""
    if len(data) < HEADER.size:
        raise BundleError(f"truncated: {len(data)} bytes is shorter than the {HEADER.size}-byte header")
    magic, version, flags, m_len, o_len, sig_alg, sig_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BundleError("magic: not a sealnet bundle")
    if version > FORMAT_VERSION:
        raise BundleError(f"format version {version} is newer than this sealnet understands ({FORMAT_VERSION})")
    if version != FORMAT_VERSION:
        raise BundleError(f"format version {version} is not supported")
    if flags != 0:
        raise BundleError(f"flags: unknown flags 0x{flags:04x}")
    if sig_alg != SIG_ED25519 or sig_len != SIG_LEN:
        raise BundleError(f"signature: algorithm {sig_alg} with length {sig_len} is not Ed25519")
    if m_len > MAX_PART or o_len > MAX_PART:
        raise BundleError("length: manifest or object larger than 64 MiB")
    end = HEADER.size + m_len + o_len
    if len(data) != end + SIG_LEN:
        kind = "truncated" if len(data) < end + SIG_LEN else "trailing bytes"
        raise BundleError(f"{kind}: {len(data)} bytes, the header announces {end + SIG_LEN}")
    manifest_bytes = bytes(data[HEADER.size:HEADER.size + m_len])
    try:
        manifest = json.loads(manifest_bytes.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"manifest: not canonical JSON ({exc})") from None
    if not isinstance(manifest, dict) or canonical(manifest) != manifest_bytes:
        raise BundleError("manifest: not in canonical form")
    return Bundle(manifest, manifest_bytes, bytes(data[HEADER.size + m_len:end]),
                  bytes(data[end:]), bytes(data[:end]))


def check_signature(bundle: Bundle, key: Ed25519PublicKey) -> bool:
    return verify_signature(key, bundle.signature, SIGNING_CONTEXT + bundle.signed_bytes)


def check_consistency(bundle: Bundle) -> str:
    """The manifest describes exactly this object; returns the measurement."""
    m = bundle.manifest
    if m.get("format") != MANIFEST_FORMAT:
        raise BundleError(f"manifest.format: {m.get('format')!r} is not {MANIFEST_FORMAT}")
    digest = hashlib.sha384(bundle.object_bytes).hexdigest()
    if not hmac.compare_digest(str(m.get("object_sha384", "")), digest):
        raise BundleError("manifest.object_sha384: does not match the object")
    if not hmac.compare_digest(str(m.get("tables_sha384", "")),
                               hashlib.sha384(canonical(m.get("tables"))).hexdigest()):
        raise BundleError("manifest.tables_sha384: does not match manifest.tables")
    try:
        layouts = map_layouts(bundle.object_bytes)
    except Exception as exc:
        raise BundleError(f"object: libbpf cannot open it ({exc})") from None
    if m.get("maps") != layouts:
        raise BundleError("manifest.maps: does not match the object's map definitions")
    key_slots = [layout for layout in layouts if layout["name"] == abi.SEAL_KEYS_MAP]
    if key_slots:
        # The suite compiled in is the one the manifest names (its key slots tell), and an
        # AES-CCM object's AES driver is the one named.
        cipher = m.get("cipher_suite")
        try:
            built = abi.seal_suite_of_key_slot(key_slots[0]["value_size"])
        except ValueError as exc:
            raise BundleError(f"object: {exc}") from None
        if SUITE_BY_CIPHER.get(str(cipher)) != built:
            raise BundleError(f"manifest.cipher_suite: {cipher!r} is not the suite compiled into the object")
        driver = m.get("aes_implementation")
        if built == abi.SealSuite.AES_128_CCM and f"ecb({driver})".encode() not in bundle.object_bytes:
            raise BundleError(f"manifest.aes_implementation: {driver!r} is not the driver compiled into the object")
    try:
        return bundle.measurement
    except MeasureError as exc:
        raise BundleError(f"object: {exc}") from None


def load_bundle(data: bytes, trusted_key: Ed25519PublicKey) -> VerifiedBundle:
    """Everything a node checks before it may load: signature, consistency, measurement.

    The returned object bytes are the very bytes that were measured.
    """
    bundle = parse(data)
    if not check_signature(bundle, trusted_key):
        raise BundleError("signature: does not verify with the trusted key")
    measurement = check_consistency(bundle)
    return VerifiedBundle(bundle.manifest, bundle.object_bytes, measurement)
