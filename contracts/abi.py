"""The data plane's ABI, Python side: every name, value, slot formula and struct layout.

The C side is bpf_templates/include/ (verdicts.h, seal_hdr.h, seal_maps.h,
...). This module is the one place Python learns those facts from; nothing
else spells a verdict number, a map name or a byte offset. Each fact here is
held against the compiled object's BTF by tests/test_abi.py (clang only, no
kernel): an enum value, a struct's size or a member's offset that differs
from the C fails the test, so the two spellings cannot drift apart.

Layouts are in host byte order (a map value or a program context is the
kernel's memory), except the seal header, which is on the wire (big endian).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Iterator, Mapping


# --------------------------------------------------------------------- enums (verdicts.h, seal_hdr.h)


class Verdict(IntEnum):
    """enum sealnet_verdict (C names V_<NAME>): what happened to a frame, one counter each."""

    ALLOW_PASS = 0
    DENY_DROP = 1
    SEAL_SENT = 2
    SEAL_NO_KEY_DROP = 3
    SEAL_PLAINTEXT_DROP = 4
    MALFORMED_DROP = 5
    ARP_PASS = 6
    IPV6_DROP = 7
    OTHER_L3_DROP = 8
    FRAGMENT_DROP = 9
    INTERNAL_DROP = 10
    SEAL_BAD_TAG_DROP = 11
    SEAL_UNKNOWN_KEY_DROP = 12
    SEAL_REPLAY_DROP = 13
    SEAL_MALFORMED_DROP = 14
    SEAL_TOO_BIG_DROP = 15
    ICMP_QUOTE_DROP = 16  # egress: an ICMP error in clear quoting a sealed flow's packet

    @property
    def label(self) -> str:
        """The name counters are shown under (`sealnet node status`, validation reports)."""
        return self.name.lower()

    @property
    def passes(self) -> bool:
        """The frame goes on (TC_ACT_OK): verdict_action() in verdicts.h."""
        return self in (Verdict.ALLOW_PASS, Verdict.ARP_PASS, Verdict.SEAL_SENT)

    @classmethod
    def from_label(cls, label: str) -> Verdict:
        return cls[label.upper()]


class Action(IntEnum):
    """enum sealnet_action (C names ACT_<NAME>): a rule's action in the rule_action table."""

    DENY = 0
    ALLOW = 1
    SEAL = 2


class Direction(IntEnum):
    """enum sealnet_dir (C names DIR_<NAME>): which hook decided."""

    EGRESS = 0
    INGRESS = 1

    @property
    def label(self) -> str:
        return self.name.lower()


class SealSuite(IntEnum):
    """enum seal_suite (C names SEAL_SUITE_<NAME>): the suite byte of the seal header."""

    AES_128_CCM = 1
    CHACHA20_POLY1305 = 2


class SealFormat(IntEnum):
    """enum seal_format (C names SEAL_<NAME>, seal_hdr.h): the v1 wire format's numbers.

    Named numbers rather than an enumeration: members with equal values are
    aliases (TAG_LEN is HDR_LEN's value), all checked by name."""

    VERSION = 1
    HDR_LEN = 16  # sizeof(struct seal_hdr)
    TAG_LEN = 16  # every suite's tag, after the ciphertext
    OVERHEAD = 32  # HDR_LEN + TAG_LEN: what a sealed packet grows by
    NONCE_OFF = 3  # the nonce is the header from `sender` on
    NONCE_LEN = 13
    EPOCH_MASK = 0xFF  # the header carries the low 8 bits of the epoch
    MAX_CPUS = 256  # what the header's cpu byte can name


class SealKeySlots(IntEnum):
    """enum seal_key_slots (C names SEAL_<NAME>, seal_maps.h)."""

    EPOCH_SLOTS = 4  # previous, current, next (and one free): epoch % 4 picks the key slot
    SEQ_COUNT_BITS = 32  # a sequence is generation << 32 | count (runtime/nonce_ledger.py)
    SEQ_MARGIN_BITS = 20  # egress seals no count within 2^20 of its generation's end


class SealReplay(IntEnum):
    """enum seal_replay_window (C names SEAL_<NAME>, seal_replay.h)."""

    REPLAY_WORDS = 16  # 64-bit words of a stream's bitmap
    REPLAY_WINDOW = 960  # (REPLAY_WORDS - 1) * 64: sequences below the top still accepted
    REPLAY_WAYS = 4  # streams per set of the stream table
    REPLAY_SETS = 4096  # sets of the stream table (a power of two): 16384 streams
    REPLAY_FLOOR_CELLS = 1 << 17  # at most this many 8-byte floor cells (1 MiB): seal_replay_floor_groups()


# Each enum's C name and the prefix of its constants (for the BTF check); V_COUNT is len(Verdict).
C_ENUMS: dict[type[IntEnum], tuple[str, str]] = {
    Verdict: ("sealnet_verdict", "V_"),
    Action: ("sealnet_action", "ACT_"),
    Direction: ("sealnet_dir", "DIR_"),
    SealSuite: ("seal_suite", "SEAL_SUITE_"),
    SealFormat: ("seal_format", "SEAL_"),
    SealKeySlots: ("seal_key_slots", "SEAL_"),
    SealReplay: ("seal_replay_window", "SEAL_"),
}

VERDICT_COUNT = len(Verdict)  # V_COUNT
RULE_NONE = 0xFFFFFFFF  # last_decision.rule when no rule classified the frame

# TC actions (linux/pkt_cls.h): what a program returns.
TC_ACT_OK = 0
TC_ACT_SHOT = 2


# --------------------------------------------------------------------- programs and maps

PROGRAMS: dict[Direction, str] = {Direction.EGRESS: "sealnet_egress", Direction.INGRESS: "sealnet_ingress"}
EGRESS_PROGRAM = PROGRAMS[Direction.EGRESS]
INGRESS_PROGRAM = PROGRAMS[Direction.INGRESS]
INSTALL_KEY_PROGRAM = "seal_install_key"  # SEC("syscall"), run by the node agent
FORGET_STREAMS_PROGRAM = "seal_replay_forget"  # SEC("syscall"): a released epoch's windows leave the table
SEAL_SYSCALL_PROGRAMS = (INSTALL_KEY_PROGRAM, FORGET_STREAMS_PROGRAM)  # in every data plane that seals
# The bypass guard (seal_guard.h): BPF LSM programs of a sealing data plane, each refusing one way
# to transmit past TC egress in the guarded namespace; name -> its section (the LSM hook). Written
# SEC("?lsm/...") in the C: libbpf loads them only when asked (the node loader asks when it guards;
# validation, tests and benchmarks load the object on kernels without BPF LSM).
GUARD_PROGRAMS: dict[str, str] = {
    "guard_sockopt": "lsm/socket_setsockopt",  # SOL_PACKET / PACKET_QDISC_BYPASS
    "guard_xsk_sock": "lsm/socket_post_create",  # an AF_XDP socket
    "guard_xsk_bind": "lsm/socket_bind",  # binding an AF_XDP socket made before the load
}
GUARD_NETNS_MAP = "guard_netns"  # u64 at key 0: the guarded namespace's cookie, written at load, frozen

RULE_HITS_MAP = "rule_hits"  # per-CPU u64 at rule_slot()
VERDICT_HITS_MAP = "verdict_hits"  # per-CPU u64 at verdict_slot()
LAST_DECISION_MAP = "last_decision"  # per-CPU struct last_decision at key 0
RULE_VERDICT_HITS_MAP = "rule_verdict_hits"  # per-CPU u64 at rule_verdict_slot(): which rule dropped what
COUNTER_MAPS = (RULE_HITS_MAP, VERDICT_HITS_MAP, RULE_VERDICT_HITS_MAP)  # pinned for `sealnet node status`

SEAL_KEYS_MAP = "seal_keys"  # struct seal_key at seal_key_slot()
SEAL_TX_MAP = "seal_tx"  # struct seal_tx at seal_pair()
SEAL_CONFIG_MAP = "seal_config"  # struct seal_config at key 0
SEAL_SEQ_MAP = "seal_seq"
SEAL_SCRATCH_MAP = "seal_scratch"
SEAL_REPLAY_MAP = "seal_replay"  # struct seal_set at seal_replay_set()
SEAL_REPLAY_SALT_MAP = "seal_replay_salt"  # struct seal_replay_salt at key 0: the set hash's key
SEAL_REPLAY_FLOOR_MAP = "seal_replay_floor"  # u64 per key slot at set % seal_replay_floor_groups(): evicted tops
SEAL_REPLAY_MAPS = (SEAL_REPLAY_MAP, SEAL_REPLAY_FLOOR_MAP, SEAL_REPLAY_SALT_MAP)  # one table: carried together
SEAL_REPLAY_EVICTIONS_MAP = "seal_replay_evictions"  # per-CPU u64 at key 0: streams evicted from the table
SEAL_INSTALL_MAPS = (SEAL_KEYS_MAP, SEAL_TX_MAP, SEAL_CONFIG_MAP, SEAL_SEQ_MAP)  # what key installation writes
SEAL_MAPS = SEAL_INSTALL_MAPS + (SEAL_SCRATCH_MAP, SEAL_REPLAY_EVICTIONS_MAP) + SEAL_REPLAY_MAPS
GUARD_MAPS = (GUARD_NETNS_MAP,)  # in every data plane built with the sealing path
DATAPATH_MAPS = (RULE_HITS_MAP, VERDICT_HITS_MAP, RULE_VERDICT_HITS_MAP, LAST_DECISION_MAP)


# --------------------------------------------------------------------- the sealing path's constants

SEAL_VERSION = int(SealFormat.VERSION)
SEAL_HDR_LEN = int(SealFormat.HDR_LEN)
SEAL_TAG_LEN = int(SealFormat.TAG_LEN)
SEAL_OVERHEAD = int(SealFormat.OVERHEAD)
SEAL_EPOCH_MASK = int(SealFormat.EPOCH_MASK)
SEAL_EPOCH_SLOTS = int(SealKeySlots.EPOCH_SLOTS)
SEAL_SEQ_COUNT_BITS = int(SealKeySlots.SEQ_COUNT_BITS)
SEAL_SEQ_COUNT_END = (1 << SEAL_SEQ_COUNT_BITS) - (1 << int(SealKeySlots.SEQ_MARGIN_BITS))  # SEAL_SEQ_COUNT_END
SEAL_REPLAY_WORDS = int(SealReplay.REPLAY_WORDS)
SEAL_REPLAY_WINDOW = int(SealReplay.REPLAY_WINDOW)
SEAL_REPLAY_WAYS = int(SealReplay.REPLAY_WAYS)
SEAL_REPLAY_SETS = int(SealReplay.REPLAY_SETS)
SEAL_REPLAY_FLOOR_CELLS = int(SealReplay.REPLAY_FLOOR_CELLS)
SEAL_NONCE = slice(int(SealFormat.NONCE_OFF), int(SealFormat.NONCE_OFF + SealFormat.NONCE_LEN))  # of the header

# The kernel AES implementation compiled into an aes-ccm data plane (SEAL_AES_DRIVER); the
# constant-time one first: the default.
AES_DRIVERS = ("aes-fixed-time", "aes-generic")


# --------------------------------------------------------------------- slot formulas


def verdict_slot(direction: int, verdict: int) -> int:
    """verdict_hits key of (direction, verdict): count() in the template."""
    return direction * VERDICT_COUNT + verdict


def verdict_slot_count() -> int:
    return len(Direction) * VERDICT_COUNT


def rule_slot(direction: int, rule: int, n_rules: int) -> int:
    """rule_hits key of (direction, rule index); rule n_rules is the default."""
    return direction * (n_rules + 1) + rule


def rule_slot_count(n_rules: int) -> int:
    return len(Direction) * (n_rules + 1)


def rule_verdict_slot(direction: int, rule: int, verdict: int, n_rules: int) -> int:
    """rule_verdict_hits key of (direction, rule, verdict): every verdict of every rule, so any
    drop is traced to the policy line behind it."""
    return rule_slot(direction, rule, n_rules) * VERDICT_COUNT + verdict


def rule_verdict_slot_count(n_rules: int) -> int:
    return rule_slot_count(n_rules) * VERDICT_COUNT


def domain_slots(n_domains: int) -> int:
    """SEAL_DOMAIN_SLOTS: domain ids are 1-based, 0 is "in no domain"."""
    return n_domains + 1


def seal_pair(src_id: int, dst_id: int, n_domains: int) -> int:
    """The pair index of (source domain, destination domain); 0 is never a valid pair."""
    slots = domain_slots(n_domains)
    if not (0 < src_id < slots and 0 < dst_id < slots):
        raise ValueError(f"domain ids {src_id}, {dst_id} are outside 1..{n_domains}")
    return src_id * slots + dst_id


def seal_pair_count(n_domains: int) -> int:
    """max_entries of seal_tx."""
    return domain_slots(n_domains) ** 2


def seal_key_slot(pair: int, epoch: int) -> int:
    """seal_keys key of (pair, epoch): seal_key_slot() in seal_maps.h."""
    return pair * SEAL_EPOCH_SLOTS + epoch % SEAL_EPOCH_SLOTS


def seal_key_slot_count(n_domains: int) -> int:
    """max_entries of seal_keys."""
    return seal_pair_count(n_domains) * SEAL_EPOCH_SLOTS


# The stream table (seal_replay.h): a stream lives in one set, found by a keyed hash.

_U64 = (1 << 64) - 1


def seal_stream_word(sender: int, pair: int, epoch: int, cpu: int) -> int:
    """seal_stream_word(): a stream as one 64-bit word, what a way's `stream` holds (0: free)."""
    return sender | pair << 32 | (epoch & SEAL_EPOCH_MASK) << 48 | cpu << 56


def seal_stream_of(word: int) -> tuple[int, int, int, int]:
    """(sender, pair, epoch, cpu) of a stream word."""
    return word & 0xFFFFFFFF, (word >> 32) & 0xFFFF, (word >> 48) & 0xFF, word >> 56


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _U64


def siphash_word(k0: int, k1: int, message: int, c_rounds: int = 1, d_rounds: int = 3) -> int:
    """SipHash-c-d of one 8-byte little-endian word (seal_replay.h uses 1-3)."""
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & _U64; v[1] = _rotl(v[1], 13) ^ v[0]; v[0] = _rotl(v[0], 32)  # noqa: E702
            v[2] = (v[2] + v[3]) & _U64; v[3] = _rotl(v[3], 16) ^ v[2]  # noqa: E702
            v[0] = (v[0] + v[3]) & _U64; v[3] = _rotl(v[3], 21) ^ v[0]  # noqa: E702
            v[2] = (v[2] + v[1]) & _U64; v[1] = _rotl(v[1], 17) ^ v[2]; v[2] = _rotl(v[2], 32)  # noqa: E702

    for block in (message, 8 << 56):  # the word, then the final block with the length
        v[3] ^= block
        rounds(c_rounds)
        v[0] ^= block
    v[2] ^= 0xFF
    rounds(d_rounds)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def seal_replay_set(stream: int, k0: int, k1: int) -> int:
    """seal_replay key of a stream word under the table's salt: seal_replay_set_of()."""
    return siphash_word(k0, k1, stream) & (SEAL_REPLAY_SETS - 1)


def seal_replay_floor_groups(n_domains: int) -> int:
    """SEAL_REPLAY_FLOOR_GROUPS, max_entries of seal_replay_floor (set s's floors are at key
    s % groups, a u64 per key slot): as many groups as fit in SEAL_REPLAY_FLOOR_CELLS cells, one
    per set when the policy has few pairs."""
    return max(1, min(SEAL_REPLAY_SETS, SEAL_REPLAY_FLOOR_CELLS // seal_key_slot_count(n_domains)))


# --------------------------------------------------------------------- struct layouts


KERNEL_ONLY = "kernel:"


@dataclass(frozen=True)
class Field:
    """One member: its offset and its struct format (byte order included, e.g. "=I", ">Q", "32s").

    A format "kernel:N" is N bytes only the kernel reads and writes (kptrs:
    a lookup from user space reads zeros, an update leaves them alone)."""

    name: str
    offset: int
    fmt: str

    @property
    def user_visible(self) -> bool:
        return not self.fmt.startswith(KERNEL_ONLY)

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt) if self.user_visible else int(self.fmt[len(KERNEL_ONLY):])


@dataclass(frozen=True)
class Layout:
    """A C struct as user space reads and writes it."""

    name: str  # the C struct's name
    size: int
    fields: tuple[Field, ...]

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"struct {self.name} has no member {name!r}")

    def offset(self, name: str) -> int:
        return self.field(name).offset

    def pack(self, **values: Any) -> bytearray:
        """The struct's bytes: the named members set, everything else zero."""
        out = bytearray(self.size)
        for name, value in values.items():
            f = self.field(name)
            if not f.user_visible:
                raise ValueError(f"{self.name}.{name} belongs to the kernel: user space cannot set it")
            struct.pack_into(f.fmt, out, f.offset, value)
        return out

    def read(self, data: bytes | bytearray | memoryview, name: str) -> Any:
        f = self.field(name)
        if not f.user_visible:
            raise ValueError(f"{self.name}.{name} belongs to the kernel: user space cannot read it")
        if len(data) < self.size:
            raise ValueError(f"struct {self.name} is {self.size} bytes, got {len(data)}")
        return struct.unpack_from(f.fmt, data, f.offset)[0]

    def unpack(self, data: bytes | bytearray | memoryview) -> dict[str, Any]:
        return {f.name: self.read(data, f.name) for f in self.fields if f.user_visible}


# struct last_decision (the template): this CPU's last decision, for translation validation.
LAST_DECISION = Layout("last_decision", 16, (
    Field("seq", 0, "=Q"), Field("rule", 8, "=I"), Field("verdict", 12, "=I"),
))

# struct seal_key_args (seal_keys.h): the context of seal_install_key.
SEAL_KEY_ARGS = Layout("seal_key_args", 48, (
    Field("key", 0, "32s"),  # SEAL_KEY_LEN used; zeroed by the program before it returns
    Field("slot", 32, "=I"), Field("epoch", 36, "=I"),
    Field("remove", 40, "=I"),  # 1: release the slot instead
    Field("err", 44, "=i"),  # 0 or a negative errno
))

# sizeof(struct seal_aead_key): each suite's key state in a seal_keys slot (kptrs, or key bytes).
# ChaCha20-Poly1305: the 32 key bytes, `set`, a reserved word (seal_aead_chacha.h).
SEAL_AEAD_KEY_SIZE = {SealSuite.AES_128_CCM: 16, SealSuite.CHACHA20_POLY1305: 40}


def seal_suite_of_key_slot(value_size: int) -> SealSuite:
    """The suite a data plane was built with, from the size of its seal_keys values (one per suite)."""
    for suite in SealSuite:
        if seal_key_layout(suite).size == value_size:
            return suite
    raise ValueError(f"no suite has {value_size}-byte key slots")


def seal_key_layout(suite: SealSuite = SealSuite.AES_128_CCM) -> Layout:
    """struct seal_key (seal_maps.h): one direction's key at one epoch; epoch and installed
    sit at the same offsets for every suite."""
    aead = SEAL_AEAD_KEY_SIZE[suite]
    return Layout("seal_key", 8 + aead, (
        Field("epoch", 0, "=I"), Field("installed", 4, "=I"), Field("aead", 8, f"{KERNEL_ONLY}{aead}"),
    ))


SEAL_KEY = seal_key_layout()

# struct seal_tx (seal_maps.h): the epoch egress seals with, per pair.
SEAL_TX = Layout("seal_tx", 8, (Field("epoch", 0, "=I"), Field("active", 4, "=I")))

# struct seal_config (seal_maps.h): this node's sender id (0: nothing is sealed).
SEAL_CONFIG = Layout("seal_config", 8, (Field("sender", 0, "=I"), Field("reserved", 4, "=I")))

# struct seal_hdr (seal_hdr.h): the seal header on the wire, after the L4 header.
SEAL_HDR = Layout("seal_hdr", SEAL_HDR_LEN, (
    Field("version", 0, "B"), Field("suite", 1, "B"), Field("epoch", 2, "B"),
    Field("sender", 3, ">I"), Field("cpu", 7, "B"), Field("seq", 8, ">Q"),
))

SEAL_WAY = Layout("seal_way", 24 + 8 * SEAL_REPLAY_WORDS, (  # one stream's window in a set (seal_replay.h)
    Field("stream", 0, "=Q"),  # seal_stream_word(); 0: free
    Field("used", 8, "=Q"),  # bpf_ktime_get_ns() of the last packet accepted: the least recently used is evicted
    Field("top", 16, "=Q"),
    Field("ring", 24, f"{8 * SEAL_REPLAY_WORDS}s"),  # bit s % (64 * words) set: sequence s seen
))

SEAL_SET = Layout("seal_set", 8 + SEAL_WAY.size * SEAL_REPLAY_WAYS, (  # seal_replay's value
    Field("lock", 0, f"{KERNEL_ONLY}4"), Field("reserved", 4, "=I"),
    Field("way", 8, f"{SEAL_WAY.size * SEAL_REPLAY_WAYS}s"),  # SEAL_REPLAY_WAYS struct seal_way
))

SEAL_REPLAY_SALT = Layout("seal_replay_salt", 16, (Field("k0", 0, "=Q"), Field("k1", 8, "=Q")))

# struct seal_forget_args (seal_replay_forget.h): the context of seal_replay_forget.
SEAL_FORGET_ARGS = Layout("seal_forget_args", 16, (
    Field("pair", 0, "=I"), Field("epoch", 4, "=I"),
    Field("removed", 8, "=I"),  # out: streams removed
    Field("err", 12, "=i"),  # out: 0 or a negative errno
))

LAYOUTS: tuple[Layout, ...] = (LAST_DECISION, SEAL_KEY_ARGS, SEAL_KEY, SEAL_TX, SEAL_CONFIG, SEAL_HDR,
                               SEAL_WAY, SEAL_SET, SEAL_REPLAY_SALT, SEAL_FORGET_ARGS)


def counters_by_verdict(values: Mapping[int, int] | list[int]) -> dict[str, dict[str, int]]:
    """verdict_hits values (indexed by slot) as {direction: {verdict label: frames}}."""
    return {d.label: {v.label: values[verdict_slot(d, v)] for v in Verdict} for d in Direction}
