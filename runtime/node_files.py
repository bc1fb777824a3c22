"""Files the node agent reads and writes: bounded reads, durable writes, exclusive locks.

Why each exists:
- `read_bounded`: a bundle or key path may name /dev/zero or a FIFO; the
  read is non-blocking, refuses anything but a regular file, and stops at
  a limit, so no path makes the agent hang or swallow gigabytes.
- `write_durably`: the nonce ledger and the rollback record are promises
  about the future ("never again below this"); they must be on disk (file
  and directory entry fsync'd) before the node acts on them.
- `locked`: two agents on one node (two interfaces, or a CLI beside the
  service) serialise their read-modify-write of those records.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from typing import Iterator


class NodeFileError(Exception):
    """A one-line reason naming the path."""


def read_bounded(path: str, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes; never blocks, never reads more."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise NodeFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NodeFileError(f"{path}: not a regular file (a {what} is read from a file, not a device or pipe)")
        if info.st_size > limit:
            raise NodeFileError(f"{path}: {info.st_size} bytes is larger than the {limit} a {what} may be")
        chunks: list[bytes] = []
        left = limit + 1  # one byte more tells a file that grew past the limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise NodeFileError(f"{path}: larger than the {limit} bytes a {what} may be")
        return data
    except OSError as exc:
        raise NodeFileError(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def loose_permissions(path: str) -> str | None:
    """Why a secret file is readable by others (None: owner-only), from the open file's own mode."""
    try:
        info = os.stat(path)
    except OSError:
        return None  # the read that follows reports it
    if info.st_mode & 0o077:
        return f"mode {stat.S_IMODE(info.st_mode):04o} lets group or others read or write it (want 0600)"
    if info.st_uid != os.geteuid() and info.st_uid != 0:
        return f"owned by uid {info.st_uid}, not by this user or root"
    return None


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: written, fsync'd, renamed, and the directory fsync'd."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".sealnet-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created 0600); released when the process dies, too."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                break
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    raise
        yield
    finally:
        os.close(fd)  # closing drops the lock
