"""Thin, typed ctypes layer over the system's libbpf.so.1 (v1.1.x).

Why ctypes and not bcc or a compiled extension: the node must load exactly the
ELF bytes that were measured, from memory, with the distribution's libbpf; a
ctypes layer needs no compiler on the node and keeps that path short.

Struct layouts below mirror /usr/include/bpf/{libbpf,bpf}.h of libbpf 1.1.2 and
<linux/bpf.h>; every options struct starts with ``sz`` (its own size) so libbpf
can tell which fields we know about. tests/test_libbpf.py cross-checks the sizes
and offsets against the C headers with a compiler.

Error convention of libbpf >= 1.0: functions returning int return -errno;
functions returning pointers return NULL and set errno.
"""

from __future__ import annotations

import ctypes
import enum
import errno as _errno
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Iterator

from sealnet.contracts.errors import OsCallError

__all__ = [
    "LibbpfError",
    "BpfLoadError",
    "MapType",
    "ProgType",
    "BpfObject",
    "Program",
    "ProgInfo",
    "Map",
    "MapBatch",
    "TestRunResult",
    "SyscallRunResult",
    "TcAttachment",
    "possible_cpus",
    "create_map",
    "attach_tc",
    "detach_tc",
    "query_tc",
    "destroy_clsact",
    "attach_lsm",
    "probe_lsm_hook",
    "libbpf_version",
]

log = logging.getLogger("sealnet.libbpf")

# Kernel verifier logs of large programs run to megabytes; on kernels >= 6.4 the
# log is rotating, so a too-small buffer keeps the tail (where the error is).
DEFAULT_KERNEL_LOG_SIZE = 4 * 1024 * 1024
# Extra room for data_out beyond the input frame: the data plane grows sealed
# packets by 32 bytes; leave generous head room for other encapsulations.
DEFAULT_DATA_OUT_SLACK = 1024

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
# elem_flags of a lookup: copy the value under its bpf_spin_lock (maps whose value has one).
BPF_F_LOCK = 4
BPF_TAG_SIZE = 8
BPF_OBJ_NAME_LEN = 16

# enum bpf_tc_attach_point
BPF_TC_INGRESS = 1 << 0
BPF_TC_EGRESS = 1 << 1
BPF_TC_F_REPLACE = 1 << 0

# enum bpf_attach_type: a BPF LSM program's (SEC("lsm/...")) attach type.
BPF_LSM_MAC = 27

# libbpf's own error codes (libbpf.h: enum libbpf_errno) start here.
_LIBBPF_ERRNO_START = 4000


class MapType(enum.IntEnum):
    """enum bpf_map_type (subset used or likely to be used)."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    RINGBUF = 27


class ProgType(enum.IntEnum):
    """enum bpf_prog_type (subset)."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    SCHED_CLS = 3
    SCHED_ACT = 4
    XDP = 6
    CGROUP_SKB = 8
    LSM = 29
    SYSCALL = 31


_PERCPU_MAP_TYPES = frozenset(
    {MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH, 21}  # 21: PERCPU_CGROUP_STORAGE
)


# --------------------------------------------------------------------------- errors


class LibbpfError(OsCallError):
    """A libbpf or bpf() call failed; ``errno`` is the positive error number."""


class BpfLoadError(LibbpfError):
    """Opening or loading a BPF object failed.

    ``verifier_log`` is the kernel verifier's log of the failing program (empty
    when the failure happened before the kernel saw a program, e.g. a bad ELF);
    ``libbpf_log`` is what libbpf itself printed during the call.
    """

    def __init__(self, message: str, verifier_log: str, errno: int = 0, libbpf_log: str = "") -> None:
        super().__init__(message, errno)
        self.verifier_log = verifier_log
        self.libbpf_log = libbpf_log


def strerror(err: int) -> str:
    """Readable text for a (positive or negative) errno or libbpf error code."""
    err = abs(err)
    if err >= _LIBBPF_ERRNO_START:
        buf = ctypes.create_string_buffer(256)
        _lib().libbpf_strerror(err, buf, len(buf))
        return buf.value.decode(errors="replace")
    try:
        name = _errno.errorcode[err]
    except KeyError:
        return os.strerror(err)
    return f"{os.strerror(err)} ({name})"


def _check(ret: int, what: str) -> int:
    """Raise LibbpfError for a negative libbpf return code."""
    if ret < 0:
        err = -ret
        raise LibbpfError(f"{what}: {strerror(err)}", err)
    return ret


# --------------------------------------------------------------------------- C structs


class _BpfObjectOpenOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_removed_attach_prog_fd", ctypes.c_uint32),  # `__u32 :32` stub in the header
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_void_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


class _BpfTestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class _BpfTcHook(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("ifindex", ctypes.c_int),
        ("attach_point", ctypes.c_int),
        ("parent", ctypes.c_uint32),
    ]


class _BpfTcOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("prog_fd", ctypes.c_int),
        ("flags", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("handle", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
    ]


class _BpfProgInfo(ctypes.Structure):
    # struct bpf_prog_info from <linux/bpf.h>; aligned(8) => size 232.
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * BPF_TAG_SIZE),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),  # bitfield :1 + :31 pad
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class _BpfMapBatchOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _BpfMapInfo(ctypes.Structure):
    # Prefix of struct bpf_map_info; the kernel copies min(our size, its size).
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


class _BpfMapCreateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32),
        ("map_ifindex", ctypes.c_uint32),
    ]


class _BpfProgLoadOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("attempts", ctypes.c_int),
        ("expected_attach_type", ctypes.c_int),
        ("prog_btf_fd", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_ifindex", ctypes.c_uint32),
        ("kern_version", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32),
        ("fd_array", ctypes.c_void_p),
        ("func_info", ctypes.c_void_p),
        ("func_info_cnt", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_void_p),
        ("line_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_void_p),
    ]


# Sizes as compiled from libbpf 1.1.2's headers on x86_64 (see tests/test_libbpf.py).
EXPECTED_SIZES = {
    "bpf_object_open_opts": 80,
    "bpf_test_run_opts": 80,
    "bpf_tc_hook": 24,
    "bpf_tc_opts": 32,
    "bpf_prog_info": 232,
    "bpf_map_create_opts": 48,
    "bpf_prog_load_opts": 104,
    "bpf_map_batch_opts": 24,
}
STRUCTS: dict[str, type[ctypes.Structure]] = {
    "bpf_object_open_opts": _BpfObjectOpenOpts,
    "bpf_test_run_opts": _BpfTestRunOpts,
    "bpf_tc_hook": _BpfTcHook,
    "bpf_tc_opts": _BpfTcOpts,
    "bpf_prog_info": _BpfProgInfo,
    "bpf_map_create_opts": _BpfMapCreateOpts,
    "bpf_prog_load_opts": _BpfProgLoadOpts,
    "bpf_map_batch_opts": _BpfMapBatchOpts,
}


def _opts(cls: type[ctypes.Structure]) -> ctypes.Structure:
    obj = cls()
    obj.sz = ctypes.sizeof(cls)  # type: ignore[attr-defined]
    return obj


# --------------------------------------------------------------------------- library loading

_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_LIBBPF_WARN, _LIBBPF_INFO, _LIBBPF_DEBUG = 0, 1, 2

_lib_handle: ctypes.CDLL | None = None
_lib_lock = threading.Lock()
_capture = threading.local()
_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
_libc.vsnprintf.restype = ctypes.c_int


def _format_va(fmt: bytes, ap: int) -> str:
    # On x86_64 a va_list parameter decays to a pointer to __va_list_tag, so the
    # pointer libbpf gave us can be handed straight to vsnprintf (once).
    buf = ctypes.create_string_buffer(8192)
    _libc.vsnprintf(buf, len(buf), fmt, ap)
    return buf.value.decode(errors="replace")


@_PRINT_FN
def _print_cb(level: int, fmt: bytes | None, ap: int | None) -> int:
    try:
        sink: list[str] | None = getattr(_capture, "lines", None)
        want_debug = log.isEnabledFor(logging.DEBUG)
        if level >= _LIBBPF_DEBUG and not want_debug:
            return 0
        if fmt is None:
            return 0
        text = _format_va(fmt, ap or 0)
        if sink is not None and level <= _LIBBPF_INFO:
            sink.append(text)
        pylevel = {_LIBBPF_WARN: logging.WARNING, _LIBBPF_INFO: logging.INFO}.get(level, logging.DEBUG)
        # Captured warnings end up in the raised exception; keep the log quiet then.
        if sink is not None and pylevel == logging.WARNING:
            pylevel = logging.DEBUG
        log.log(pylevel, "%s", text.rstrip("\n"))
    except Exception:  # never let an exception cross the C boundary
        pass
    return 0


@contextmanager
def _capturing() -> Iterator[list[str]]:
    """Collect libbpf's warn/info output printed by this thread."""
    previous = getattr(_capture, "lines", None)
    lines: list[str] = []
    _capture.lines = lines
    try:
        yield lines
    finally:
        _capture.lines = previous


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_uint32, c_size_t, c_void_p, c_char_p = (
        ctypes.c_int,
        ctypes.c_uint32,
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.c_char_p,
    )
    sigs: dict[str, tuple[list[object], object]] = {
        "libbpf_set_print": ([_PRINT_FN], c_void_p),
        "libbpf_strerror": ([c_int, c_char_p, c_size_t], c_int),
        "libbpf_num_possible_cpus": ([], c_int),
        "libbpf_major_version": ([], c_uint32),
        "libbpf_minor_version": ([], c_uint32),
        "bpf_object__open_mem": ([c_void_p, c_size_t, ctypes.POINTER(_BpfObjectOpenOpts)], c_void_p),
        "bpf_object__load": ([c_void_p], c_int),
        "bpf_object__close": ([c_void_p], None),
        "bpf_object__name": ([c_void_p], c_char_p),
        "bpf_object__next_program": ([c_void_p, c_void_p], c_void_p),
        "bpf_object__next_map": ([c_void_p, c_void_p], c_void_p),
        "bpf_program__name": ([c_void_p], c_char_p),
        "bpf_program__section_name": ([c_void_p], c_char_p),
        "bpf_program__fd": ([c_void_p], c_int),
        "bpf_program__type": ([c_void_p], c_int),
        "bpf_program__set_autoload": ([c_void_p, ctypes.c_bool], c_int),
        "bpf_program__autoload": ([c_void_p], ctypes.c_bool),
        "bpf_map__name": ([c_void_p], c_char_p),
        "bpf_map__fd": ([c_void_p], c_int),
        "bpf_map__type": ([c_void_p], c_int),
        "bpf_map__key_size": ([c_void_p], c_uint32),
        "bpf_map__value_size": ([c_void_p], c_uint32),
        "bpf_map__max_entries": ([c_void_p], c_uint32),
        "bpf_map__reuse_fd": ([c_void_p, c_int], c_int),
        "bpf_map_create": (
            [c_int, c_char_p, c_uint32, c_uint32, c_uint32, ctypes.POINTER(_BpfMapCreateOpts)],
            c_int,
        ),
        "bpf_map_lookup_elem": ([c_int, c_void_p, c_void_p], c_int),
        "bpf_map_update_elem": ([c_int, c_void_p, c_void_p, ctypes.c_uint64], c_int),
        "bpf_map_delete_elem": ([c_int, c_void_p], c_int),
        "bpf_map_get_next_key": ([c_int, c_void_p, c_void_p], c_int),
        "bpf_map_lookup_batch": (
            [c_int, c_void_p, c_void_p, c_void_p, c_void_p, ctypes.POINTER(c_uint32), ctypes.POINTER(_BpfMapBatchOpts)],
            c_int,
        ),
        "bpf_map_freeze": ([c_int], c_int),
        "bpf_obj_pin": ([c_int, c_char_p], c_int),
        "bpf_obj_get": ([c_char_p], c_int),
        "bpf_obj_get_info_by_fd": ([c_int, c_void_p, ctypes.POINTER(c_uint32)], c_int),
        "bpf_prog_test_run_opts": ([c_int, ctypes.POINTER(_BpfTestRunOpts)], c_int),
        "bpf_tc_hook_create": ([ctypes.POINTER(_BpfTcHook)], c_int),
        "bpf_tc_hook_destroy": ([ctypes.POINTER(_BpfTcHook)], c_int),
        "bpf_tc_attach": ([ctypes.POINTER(_BpfTcHook), ctypes.POINTER(_BpfTcOpts)], c_int),
        "bpf_tc_detach": ([ctypes.POINTER(_BpfTcHook), ctypes.POINTER(_BpfTcOpts)], c_int),
        "bpf_tc_query": ([ctypes.POINTER(_BpfTcHook), ctypes.POINTER(_BpfTcOpts)], c_int),
        "bpf_link_create": ([c_int, c_int, c_int, c_void_p], c_int),
        "bpf_prog_load": ([c_int, c_char_p, c_char_p, c_void_p, c_size_t, ctypes.POINTER(_BpfProgLoadOpts)], c_int),
        "libbpf_find_vmlinux_btf_id": ([c_char_p, c_int], c_int),
    }
    for name, (argtypes, restype) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype


def _lib() -> ctypes.CDLL:
    """Load libbpf.so.1 once (lazily, so importing this module never fails)."""
    global _lib_handle
    if _lib_handle is not None:
        return _lib_handle
    with _lib_lock:
        if _lib_handle is None:
            try:
                lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
            except OSError as exc:
                raise LibbpfError(f"cannot load libbpf.so.1: {exc}", _errno.ENOENT) from exc
            _declare(lib)
            lib.libbpf_set_print(_print_cb)
            _lib_handle = lib
    return _lib_handle


def libbpf_version() -> tuple[int, int]:
    lib = _lib()
    return int(lib.libbpf_major_version()), int(lib.libbpf_minor_version())


def possible_cpus() -> int:
    """Number of possible CPUs: the stride count of per-CPU map values."""
    return _check(int(_lib().libbpf_num_possible_cpus()), "libbpf_num_possible_cpus")


def _round8(n: int) -> int:
    return (n + 7) & ~7


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


# --------------------------------------------------------------------------- maps


class Map:
    """A BPF map, addressed by fd. Keys and values are raw bytes (host order).

    Maps returned by BpfObject are owned by the object (closed with it); maps
    from create_map() own their fd and must be closed (or used as a context
    manager).
    """

    def __init__(
        self,
        fd: int,
        name: str,
        type: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        *,
        owns_fd: bool = False,
        owner: BpfObject | None = None,
    ) -> None:
        self._fd = fd
        self.name = name
        self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self._owns_fd = owns_fd
        # An object's maps die with it: without this a stale fd number could
        # silently address whatever the process opened next under that number.
        self._owner = owner

    @classmethod
    def from_fd(cls, fd: int, *, owns_fd: bool = False) -> Map:
        """Wrap an existing map fd (e.g. from a pinned path), reading its layout
        from the kernel (the name is the kernel's, at most 15 characters)."""
        info = map_info(fd)
        return cls(
            fd,
            info.name.decode(errors="replace"),
            int(info.type),
            int(info.key_size),
            int(info.value_size),
            int(info.max_entries),
            owns_fd=owns_fd,
        )

    @property
    def fd(self) -> int:
        if self._owner is not None and self._owner.closed:
            return -1
        return self._fd

    def __repr__(self) -> str:
        return (
            f"Map(name={self.name!r}, fd={self.fd}, type={self.type}, key_size={self.key_size}, "
            f"value_size={self.value_size}, max_entries={self.max_entries})"
        )

    @property
    def is_percpu(self) -> bool:
        return self.type in _PERCPU_MAP_TYPES

    @property
    def lookup_size(self) -> int:
        """Bytes a lookup returns: per-CPU values are 8-byte aligned, one per possible CPU."""
        if self.is_percpu:
            return _round8(self.value_size) * possible_cpus()
        return self.value_size

    def _key(self, key: bytes) -> ctypes.Array[ctypes.c_char]:
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name!r}: key is {len(key)} bytes, expected {self.key_size}")
        return ctypes.create_string_buffer(bytes(key), self.key_size or 1)

    def _require_fd(self) -> None:
        if self.fd < 0:
            raise LibbpfError(f"map {self.name!r} has no fd (object not loaded or closed)", _errno.EBADF)

    def lookup(self, key: bytes) -> bytes | None:
        """Value bytes, or None when the key is absent (per-CPU: all CPUs concatenated)."""
        self._require_fd()
        kbuf = self._key(key)
        size = self.lookup_size
        vbuf = ctypes.create_string_buffer(size)
        ret = _lib().bpf_map_lookup_elem(self.fd, kbuf, vbuf)
        if ret == -_errno.ENOENT:
            return None
        _check(ret, f"lookup in map {self.name!r}")
        return vbuf.raw[:size]

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        """One value per possible CPU (each value_size bytes), or None if absent."""
        if not self.is_percpu:
            raise ValueError(f"map {self.name!r} is not a per-CPU map")
        raw = self.lookup(key)
        if raw is None:
            return None
        stride = _round8(self.value_size)
        return [raw[i : i + self.value_size] for i in range(0, len(raw), stride)]

    def percpu_u64_sums(self, key: bytes) -> list[int] | None:
        """For a per-CPU value made of u64 counters: each counter summed over all CPUs."""
        if self.value_size % 8:
            raise ValueError(f"map {self.name!r}: value_size {self.value_size} is not a multiple of 8")
        values = self.lookup_percpu(key)
        if values is None:
            return None
        n = self.value_size // 8
        sums = [0] * n
        for v in values:
            for i in range(n):
                sums[i] += int.from_bytes(v[i * 8 : i * 8 + 8], "little")
        return [s & 0xFFFFFFFFFFFFFFFF for s in sums]

    def sum_percpu_u64(self, key: bytes) -> int:
        """Sum over CPUs of a single per-CPU u64 counter; 0 when the key is absent."""
        if self.value_size != 8:
            raise ValueError(f"map {self.name!r}: value_size is {self.value_size}, expected 8")
        sums = self.percpu_u64_sums(key)
        return 0 if sums is None else sums[0]

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """Insert or replace. Per-CPU maps take lookup_size bytes, or value_size
        bytes which are then written to every CPU."""
        self._require_fd()
        kbuf = self._key(key)
        value = bytes(value)
        if self.is_percpu and len(value) == self.value_size:
            stride = _round8(self.value_size)
            value = (value + b"\0" * (stride - self.value_size)) * possible_cpus()
        expected = self.lookup_size
        if len(value) != expected:
            raise ValueError(f"map {self.name!r}: value is {len(value)} bytes, expected {expected}")
        vbuf = ctypes.create_string_buffer(value, expected or 1)
        _check(_lib().bpf_map_update_elem(self.fd, kbuf, vbuf, flags), f"update in map {self.name!r}")

    def delete(self, key: bytes) -> bool:
        """Delete a key; False when it was absent (array maps: EINVAL is raised)."""
        self._require_fd()
        ret = _lib().bpf_map_delete_elem(self.fd, self._key(key))
        if ret == -_errno.ENOENT:
            return False
        _check(ret, f"delete in map {self.name!r}")
        return True

    def freeze(self) -> None:
        """Make the map read-only for user space (BPF_MAP_FREEZE); irreversible."""
        self._require_fd()
        _check(_lib().bpf_map_freeze(self.fd), f"freeze map {self.name!r}")

    def keys(self) -> Iterator[bytes]:
        self._require_fd()
        lib = _lib()
        size = self.key_size or 1
        nxt = ctypes.create_string_buffer(size)
        ret = lib.bpf_map_get_next_key(self.fd, None, nxt)
        while ret == 0:
            key = nxt.raw[: self.key_size]
            yield key
            cur = ctypes.create_string_buffer(key, size)
            ret = lib.bpf_map_get_next_key(self.fd, cur, nxt)
        if ret != -_errno.ENOENT:
            _check(ret, f"iterate map {self.name!r}")

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:  # deleted concurrently
                yield key, value

    def lookup_batch(self, *, lock: bool = False, per_call: int | None = None) -> MapBatch:
        """Every entry (up to max_entries) in as few BPF_MAP_LOOKUP_BATCH calls as possible: one
        for an array map, instead of a get-next-key and a lookup per entry as items() makes.

        lock: copy each value under its bpf_spin_lock (BPF_F_LOCK), so no value is read half
        written by a program holding the lock; the kernel refuses it (EINVAL) for a value without
        one. Values are consistent one at a time only: the entries are not one snapshot.
        per_call: at most this many entries per call (default: all of them in one)."""
        self._require_fd()
        capacity = self.max_entries
        step = capacity if per_call is None else per_call
        if step < 1:
            raise ValueError(f"map {self.name!r}: per_call must be at least 1")
        size = self.lookup_size
        # bytearrays the kernel writes into in place: no second copy of megabytes of values
        keys, values = bytearray(max(capacity * self.key_size, 1)), bytearray(max(capacity * size, 1))
        key_buf = (ctypes.c_char * len(keys)).from_buffer(keys)
        value_buf = (ctypes.c_char * len(values)).from_buffer(values)
        # The position token: an array's (and the generic code's) is a key, a hash map's a
        # bucket index (u32); either fits in this.
        tokens = [ctypes.create_string_buffer(max(self.key_size, 8)) for _ in range(2)]
        opts = _opts(_BpfMapBatchOpts)
        opts.elem_flags = BPF_F_LOCK if lock else 0  # type: ignore[attr-defined]
        lib = _lib()
        got, first = 0, True
        while got < capacity:
            count = ctypes.c_uint32(min(step, capacity - got))
            ret = lib.bpf_map_lookup_batch(
                self.fd, None if first else tokens[0], tokens[1],
                ctypes.byref(key_buf, got * self.key_size), ctypes.byref(value_buf, got * size),
                ctypes.byref(count), ctypes.byref(opts),
            )
            if ret < 0 and ret != -_errno.ENOENT:
                _check(ret, f"batch lookup in map {self.name!r}")
            got += count.value  # the kernel reports what it copied, also with ENOENT
            if ret == -_errno.ENOENT or count.value == 0:
                break  # ENOENT: past the last entry, the normal end
            tokens.reverse()  # this call's out_batch is the next call's in_batch
            first = False
        del key_buf, value_buf  # a bytearray with an exported buffer cannot be resized
        del keys[got * self.key_size :], values[got * size :]
        return MapBatch(got, self.key_size, size, keys, values)

    def close(self) -> None:
        """Close an owned fd; for an object's map this only forgets the fd."""
        if self._owns_fd and self._fd >= 0:
            _close_fd(self._fd)
        self._fd = -1

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_owns_fd", False) and getattr(self, "_fd", -1) >= 0:
            self.close()


@dataclass(frozen=True)
class MapBatch:
    """Entries read by Map.lookup_batch: `count` keys and values, packed one after another."""

    count: int
    key_size: int
    value_size: int  # bytes per value in `values` (a per-CPU map's: every CPU's)
    keys: bytearray
    values: bytearray

    def key(self, i: int) -> bytes:
        return bytes(memoryview(self.keys)[i * self.key_size : (i + 1) * self.key_size])

    def value(self, i: int) -> bytes:
        return bytes(memoryview(self.values)[i * self.value_size : (i + 1) * self.value_size])

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        keys, values, k, v = memoryview(self.keys), memoryview(self.values), self.key_size, self.value_size
        for i in range(self.count):
            yield bytes(keys[i * k : (i + 1) * k]), bytes(values[i * v : (i + 1) * v])


def pin_fd(fd: int, path: str) -> None:
    """Pin a program or map fd in bpffs so it outlives this process."""
    _check(_lib().bpf_obj_pin(fd, path.encode()), f"pin {path}")


def get_pinned(path: str) -> int:
    """An fd for a pinned program or map (the caller closes it)."""
    return _check(_lib().bpf_obj_get(path.encode()), f"open pinned {path}")


def map_info(fd: int) -> _BpfMapInfo:
    info = _BpfMapInfo()
    length = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(length)), "map info")
    return info


def create_map(
    map_type: int,
    key_size: int,
    value_size: int,
    max_entries: int,
    name: str = "",
    flags: int = 0,
) -> Map:
    """Create a stand-alone map (used by probes and tests); the caller owns it."""
    lib = _lib()
    opts = _opts(_BpfMapCreateOpts)
    opts.map_flags = flags  # type: ignore[attr-defined]
    fd = lib.bpf_map_create(
        int(map_type), name.encode()[: BPF_OBJ_NAME_LEN - 1] or None, key_size, value_size, max_entries, ctypes.byref(opts)
    )
    _check(fd, f"create map {name!r}")
    return Map(fd, name, int(map_type), key_size, value_size, max_entries, owns_fd=True)


# --------------------------------------------------------------------------- programs


@dataclass(frozen=True)
class TestRunResult:
    __test__ = False  # not a pytest test class

    retval: int
    data_out: bytes
    duration_ns: int
    ctx_out: bytes | None = None


@dataclass(frozen=True)
class SyscallRunResult:
    retval: int
    ctx_out: bytes  # the kernel writes the (possibly modified) context back


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    tag: bytes
    name: str
    xlated_prog_len: int
    jited_prog_len: int
    run_cnt: int
    run_time_ns: int
    verified_insns: int


class Program:
    """A program of a BpfObject (valid while the object is open)."""

    def __init__(self, ptr: int, obj: BpfObject) -> None:
        lib = _lib()
        self._ptr = ptr
        self._obj = obj
        self.name: str = lib.bpf_program__name(ptr).decode()
        self.section: str = lib.bpf_program__section_name(ptr).decode()
        self.type: int = int(lib.bpf_program__type(ptr))

    def __repr__(self) -> str:
        return f"Program(name={self.name!r}, section={self.section!r}, fd={self.fd})"

    @property
    def autoload(self) -> bool:
        """Does load() load it? (False for SEC("?...") until set_autoload.)"""
        return bool(_lib().bpf_program__autoload(self._ptr))

    @property
    def fd(self) -> int:
        """Kernel fd of the loaded program; -1 before load or after close."""
        if self._obj.closed:
            return -1
        fd = int(_lib().bpf_program__fd(self._ptr))
        return fd if fd >= 0 else -1

    def _require_fd(self) -> int:
        fd = self.fd
        if fd < 0:
            raise LibbpfError(f"program {self.name!r} is not loaded", _errno.EBADF)
        return fd

    def info(self) -> ProgInfo:
        info = _BpfProgInfo()
        length = ctypes.c_uint32(ctypes.sizeof(info))
        _check(
            _lib().bpf_obj_get_info_by_fd(self._require_fd(), ctypes.byref(info), ctypes.byref(length)),
            f"info of program {self.name!r}",
        )
        return ProgInfo(
            id=info.id,
            type=info.type,
            tag=bytes(info.tag),
            name=info.name.decode(errors="replace"),
            xlated_prog_len=info.xlated_prog_len,
            jited_prog_len=info.jited_prog_len,
            run_cnt=info.run_cnt,
            run_time_ns=info.run_time_ns,
            verified_insns=info.verified_insns,
        )

    def tag(self) -> bytes:
        """The kernel's 8-byte program tag (SHA-1 prefix of the xlated insns, as bpftool shows it)."""
        return self.info().tag

    def test_run(
        self,
        data: bytes,
        repeat: int = 1,
        ctx_in: bytes | None = None,
        data_size_out: int | None = None,
    ) -> TestRunResult:
        """BPF_PROG_TEST_RUN on a packet. For SEC("syscall") programs use run_syscall()."""
        fd = self._require_fd()
        if repeat < 1:
            raise ValueError("repeat must be >= 1")
        data = bytes(data)
        out_size = data_size_out if data_size_out is not None else len(data) + DEFAULT_DATA_OUT_SLACK
        din = ctypes.create_string_buffer(data, max(len(data), 1))
        dout = ctypes.create_string_buffer(max(out_size, 1))
        opts = _opts(_BpfTestRunOpts)
        opts.data_in = ctypes.cast(din, ctypes.c_void_p)  # type: ignore[attr-defined]
        opts.data_size_in = len(data)  # type: ignore[attr-defined]
        opts.data_out = ctypes.cast(dout, ctypes.c_void_p)  # type: ignore[attr-defined]
        opts.data_size_out = out_size  # type: ignore[attr-defined]
        opts.repeat = repeat  # type: ignore[attr-defined]
        cin = cout = None
        if ctx_in is not None:
            ctx_in = bytes(ctx_in)
            cin = ctypes.create_string_buffer(ctx_in, max(len(ctx_in), 1))
            cout = ctypes.create_string_buffer(max(len(ctx_in), 1))
            opts.ctx_in = ctypes.cast(cin, ctypes.c_void_p)  # type: ignore[attr-defined]
            opts.ctx_size_in = len(ctx_in)  # type: ignore[attr-defined]
            opts.ctx_out = ctypes.cast(cout, ctypes.c_void_p)  # type: ignore[attr-defined]
            opts.ctx_size_out = len(ctx_in)  # type: ignore[attr-defined]
        ret = _lib().bpf_prog_test_run_opts(fd, ctypes.byref(opts))
        if ret == -_errno.ENOSPC:
            raise LibbpfError(
                f"test run of {self.name!r}: output larger than data_size_out={out_size}", _errno.ENOSPC
            )
        _check(ret, f"test run of program {self.name!r}")
        ctx_out = cout.raw[: opts.ctx_size_out] if cout is not None else None  # type: ignore[attr-defined]
        return TestRunResult(
            retval=int(opts.retval),  # type: ignore[attr-defined]
            data_out=dout.raw[: opts.data_size_out],  # type: ignore[attr-defined]
            duration_ns=int(opts.duration),  # type: ignore[attr-defined]
            ctx_out=ctx_out,
        )

    def run_syscall(self, ctx: bytes | bytearray = b"") -> SyscallRunResult:
        """Run a SEC("syscall") program once with ``ctx`` as its context (see run_syscall_fd)."""
        return run_syscall_fd(self._require_fd(), ctx, name=self.name)


def run_syscall_fd(fd: int, ctx: bytes | bytearray = b"", *, name: str = "syscall program") -> SyscallRunResult:
    """Run a SEC("syscall") program (by fd, e.g. a pinned one) once with ``ctx`` as its context.

    The kernel rejects data, repeat and ctx_out for this type; it copies the
    context back into ctx_in, which is returned as ctx_out. The ctypes copy of
    the context is zeroed before returning, since it may carry key bytes.
    """
    size = len(ctx)
    cbuf = ctypes.create_string_buffer(max(size, 1))
    if size:  # a bytearray is copied in place, without an immutable copy of a key lingering
        ctypes.memmove(cbuf, (ctypes.c_char * size).from_buffer(ctx) if isinstance(ctx, bytearray) else ctx, size)
    try:
        opts = _opts(_BpfTestRunOpts)
        if size:
            opts.ctx_in = ctypes.cast(cbuf, ctypes.c_void_p)  # type: ignore[attr-defined]
            opts.ctx_size_in = size  # type: ignore[attr-defined]
        _check(_lib().bpf_prog_test_run_opts(fd, ctypes.byref(opts)), f"run of {name!r}")
        return SyscallRunResult(retval=int(opts.retval), ctx_out=cbuf.raw[:size])  # type: ignore[attr-defined]
    finally:
        ctypes.memset(cbuf, 0, max(size, 1))


# --------------------------------------------------------------------------- objects


class BpfObject:
    """A BPF ELF object opened from memory; load() puts it into the kernel."""

    def __init__(self, ptr: int, buf: ctypes.Array[ctypes.c_char], name: str, log_buf: ctypes.Array[ctypes.c_char]) -> None:
        self._ptr: int | None = ptr
        # libbpf keeps pointers into the ELF buffer and the log buffer: keep both alive.
        self._buf = buf
        self._log_buf = log_buf
        self.name = name
        self.loaded = False

    @classmethod
    def open_memory(
        cls,
        data: bytes,
        name: str,
        *,
        kernel_log_size: int = DEFAULT_KERNEL_LOG_SIZE,
        btf_custom_path: str | None = None,
    ) -> BpfObject:
        lib = _lib()
        data = bytes(data)
        if not data:
            raise BpfLoadError(f"open of BPF object {name!r} failed: empty ELF buffer", "", _errno.EINVAL)
        buf = ctypes.create_string_buffer(data, len(data))
        log_buf = ctypes.create_string_buffer(kernel_log_size)
        opts = _opts(_BpfObjectOpenOpts)
        name_b = name.encode()
        opts.object_name = name_b  # type: ignore[attr-defined]
        if btf_custom_path:
            opts.btf_custom_path = btf_custom_path.encode()  # type: ignore[attr-defined]
        opts.kernel_log_buf = ctypes.cast(log_buf, ctypes.c_void_p)  # type: ignore[attr-defined]
        opts.kernel_log_size = kernel_log_size  # type: ignore[attr-defined]
        # level 0: no log on success; libbpf retries a failing load with level 1 into our buffer.
        opts.kernel_log_level = 0  # type: ignore[attr-defined]
        with _capturing() as lines:
            ctypes.set_errno(0)
            ptr = lib.bpf_object__open_mem(ctypes.cast(buf, ctypes.c_void_p), len(data), ctypes.byref(opts))
            err = ctypes.get_errno()
        if not ptr:
            err = err or _errno.EINVAL
            libbpf_log = "".join(lines)
            detail = _last_line(libbpf_log)
            raise BpfLoadError(
                f"open of BPF object {name!r} failed: {strerror(err)}" + (f" ({detail})" if detail else ""),
                "",
                err,
                libbpf_log,
            )
        return cls(ptr, buf, name, log_buf)

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _require_open(self) -> int:
        if self._ptr is None:
            raise LibbpfError(f"BPF object {self.name!r} is closed", _errno.EBADF)
        return self._ptr

    def load(self) -> None:
        ptr = self._require_open()
        if self.loaded:
            raise LibbpfError(f"BPF object {self.name!r} is already loaded", _errno.EALREADY)
        ctypes.memset(self._log_buf, 0, 1)
        with _capturing() as lines:
            ret = _lib().bpf_object__load(ptr)
        if ret < 0:
            err = -ret
            verifier_log = self._log_buf.value.decode(errors="replace")
            libbpf_log = "".join(lines)
            detail = "; ".join(d for d in (_failing_prog(libbpf_log), _verifier_reason(verifier_log)) if d)
            detail = detail or _last_line(libbpf_log)
            raise BpfLoadError(
                f"load of BPF object {self.name!r} failed: {strerror(err)}" + (f" ({detail})" if detail else ""),
                verifier_log,
                err,
                libbpf_log,
            )
        self.loaded = True

    def set_autoload(self, program: str, autoload: bool) -> None:
        """Before load(): choose whether ``program`` is loaded at all."""
        if self.loaded:
            raise LibbpfError(f"BPF object {self.name!r} is already loaded", _errno.EALREADY)
        prog = self.program(program)
        _check(_lib().bpf_program__set_autoload(prog._ptr, autoload), f"set autoload of {program!r}")

    def programs(self) -> list[Program]:
        ptr = self._require_open()
        lib = _lib()
        out: list[Program] = []
        p = lib.bpf_object__next_program(ptr, None)
        while p:
            out.append(Program(p, self))
            p = lib.bpf_object__next_program(ptr, p)
        return out

    def program(self, name: str) -> Program:
        for prog in self.programs():
            if prog.name == name:
                return prog
        raise KeyError(f"BPF object {self.name!r} has no program {name!r}")

    def maps(self) -> list[Map]:
        ptr = self._require_open()
        lib = _lib()
        out: list[Map] = []
        m = lib.bpf_object__next_map(ptr, None)
        while m:
            out.append(
                Map(
                    int(lib.bpf_map__fd(m)),
                    lib.bpf_map__name(m).decode(),
                    int(lib.bpf_map__type(m)),
                    int(lib.bpf_map__key_size(m)),
                    int(lib.bpf_map__value_size(m)),
                    int(lib.bpf_map__max_entries(m)),
                    owner=self,
                )
            )
            m = lib.bpf_object__next_map(ptr, m)
        return out

    def reuse_map(self, name: str, fd: int) -> None:
        """Before load: make map `name` the existing map `fd` (same layout), e.g. a pinned one
        whose contents must survive a reload."""
        ptr = self._require_open()
        lib = _lib()
        m = lib.bpf_object__next_map(ptr, None)
        while m:
            if lib.bpf_map__name(m).decode() == name:
                _check(lib.bpf_map__reuse_fd(m, fd), f"reuse map {name!r}")
                return
            m = lib.bpf_object__next_map(ptr, m)
        raise KeyError(f"BPF object {self.name!r} has no map {name!r}")

    def map(self, name: str) -> Map:
        for m in self.maps():
            if m.name == name:
                return m
        raise KeyError(f"BPF object {self.name!r} has no map {name!r}")

    def close(self) -> None:
        """Close the object; the kernel frees programs and maps no longer referenced
        (an attached TC program stays attached until detached)."""
        if self._ptr is not None:
            _lib().bpf_object__close(self._ptr)
            self._ptr = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None and _lib_handle is not None:
            self.close()


def _failing_prog(libbpf_log: str) -> str:
    """libbpf's "prog 'x': BPF program load failed: ..." line, if any."""
    for line in libbpf_log.splitlines():
        if "prog '" in line and "failed" in line:
            return line.removeprefix("libbpf: ").strip()
    return ""


def _verifier_reason(verifier_log: str) -> str:
    """The verifier's complaint: the last line before its "processed N insns" summary."""
    lines = [ln.strip() for ln in verifier_log.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("processed ") and i > 0:
            return lines[i - 1]
    return lines[-1] if lines else ""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- TC attach


@dataclass(frozen=True)
class TcAttachment:
    ifindex: int
    ingress: bool
    priority: int
    handle: int
    prog_id: int


def _hook(ifindex: int, attach_point: int) -> _BpfTcHook:
    hook = _opts(_BpfTcHook)
    hook.ifindex = ifindex  # type: ignore[attr-defined]
    hook.attach_point = attach_point  # type: ignore[attr-defined]
    return hook  # type: ignore[return-value]


def attach_tc(
    prog_fd: int,
    ifindex: int,
    ingress: bool,
    priority: int = 1,
    handle: int = 1,
    *,
    replace: bool = False,
) -> TcAttachment:
    """Attach a SCHED_CLS program (direct-action) to ifindex's clsact hook,
    creating the clsact qdisc if needed. Acts in the calling thread's network
    namespace (the runtime enters another one around the call)."""
    if priority < 1 or priority > 0xFFFF or handle < 1:
        raise ValueError("priority must be in 1..65535 and handle >= 1")
    lib = _lib()
    point = BPF_TC_INGRESS if ingress else BPF_TC_EGRESS
    with _capturing() as lines:
        hook = _hook(ifindex, point)
        ret = lib.bpf_tc_hook_create(ctypes.byref(hook))
        if ret < 0 and ret != -_errno.EEXIST:  # EEXIST: clsact already there
            raise LibbpfError(
                f"create clsact on ifindex {ifindex}: {strerror(ret)} {_last_line(''.join(lines))}".rstrip(), -ret
            )
        opts = _opts(_BpfTcOpts)
        opts.prog_fd = prog_fd  # type: ignore[attr-defined]
        opts.handle = handle  # type: ignore[attr-defined]
        opts.priority = priority  # type: ignore[attr-defined]
        opts.flags = BPF_TC_F_REPLACE if replace else 0  # type: ignore[attr-defined]
        _check(
            lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)),
            f"attach TC {'ingress' if ingress else 'egress'} on ifindex {ifindex}",
        )
        return TcAttachment(ifindex, ingress, priority, handle, int(opts.prog_id))  # type: ignore[attr-defined]


def detach_tc(
    ifindex: int, ingress: bool, priority: int = 1, handle: int = 1
) -> None:
    lib = _lib()
    with _capturing():
        hook = _hook(ifindex, BPF_TC_INGRESS if ingress else BPF_TC_EGRESS)
        opts = _opts(_BpfTcOpts)
        opts.handle = handle  # type: ignore[attr-defined]
        opts.priority = priority  # type: ignore[attr-defined]
        _check(
            lib.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts)),
            f"detach TC {'ingress' if ingress else 'egress'} on ifindex {ifindex}",
        )


def query_tc(
    ifindex: int, ingress: bool, priority: int = 1, handle: int = 1
) -> int | None:
    """Program id attached at (priority, handle), or None when nothing is there."""
    lib = _lib()
    with _capturing():
        hook = _hook(ifindex, BPF_TC_INGRESS if ingress else BPF_TC_EGRESS)
        opts = _opts(_BpfTcOpts)
        opts.handle = handle  # type: ignore[attr-defined]
        opts.priority = priority  # type: ignore[attr-defined]
        ret = lib.bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts))
        if ret in (-_errno.ENOENT, -_errno.EINVAL):  # EINVAL: no clsact qdisc at all
            return None
        _check(ret, f"query TC on ifindex {ifindex}")
        return int(opts.prog_id)  # type: ignore[attr-defined]


def destroy_clsact(ifindex: int) -> None:
    """Remove the clsact qdisc (and with it every TC program on both hooks)."""
    lib = _lib()
    with _capturing():
        hook = _hook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)
        ret = lib.bpf_tc_hook_destroy(ctypes.byref(hook))
        if ret in (-_errno.ENOENT, -_errno.EINVAL):
            return
        _check(ret, f"destroy clsact on ifindex {ifindex}")


# --------------------------------------------------------------------------- BPF LSM links


def attach_lsm(prog_fd: int) -> int:
    """Attach a loaded BPF LSM program to its hook; returns the link's fd (the caller pins
    or closes it: the program stays attached while the link has an fd or a pin)."""
    with _capturing():
        return _check(_lib().bpf_link_create(prog_fd, 0, BPF_LSM_MAC, None), "attach BPF LSM program")


def probe_lsm_hook(hook: str) -> None:
    """Load and attach a program that allows everything on LSM hook `hook` (e.g.
    "socket_setsockopt"), then drop it: raises LibbpfError when this kernel cannot
    run BPF LSM programs there (no BTF for the hook, a load or attach refused).

    Attached is not active: with `bpf` missing from the kernel's LSM list the
    program attaches and never runs; the caller checks that list too."""
    lib = _lib()
    with _capturing():
        btf_id = _check(lib.libbpf_find_vmlinux_btf_id(hook.encode(), BPF_LSM_MAC), f"find LSM hook {hook}")
        # r0 = 0; exit: "no objection", whatever the hook's arguments
        insns = (ctypes.c_uint64 * 2)(0x00000000000000B7, 0x0000000000000095)
        opts = _opts(_BpfProgLoadOpts)
        opts.expected_attach_type = BPF_LSM_MAC  # type: ignore[attr-defined]
        opts.attach_btf_id = btf_id  # type: ignore[attr-defined]
        prog_fd = _check(lib.bpf_prog_load(int(ProgType.LSM), b"sn_lsm_probe", b"GPL", insns, 2, ctypes.byref(opts)),
                         f"load a BPF LSM program on {hook}")
        try:
            _close_fd(attach_lsm(prog_fd))
        finally:
            _close_fd(prog_fd)
