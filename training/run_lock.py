"""One process per run or search directory: a lock file beside it holding the PID.

The lock is an `flock` on `.<name>.lock` in the parent directory, so it covers the
directory and the sibling its `--overwrite` replacement is built in. The kernel drops it
when its holder dies, however it dies: a stale lock file from a dead process is taken
over without asking.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os

logger = logging.getLogger("keras_googlenet.training")
# What flock(2) answers on file systems without it (Lustre mounted without `flock`, some
# NFS set-ups): the run goes on unlocked rather than not at all.
_NO_FLOCK = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF)


def _flock(fd, flags, path):
    """`fcntl.flock`; False (with a warning) where the file system has no flock.
    `BlockingIOError` (held by another process) passes through."""
    try:
        fcntl.flock(fd, flags)
        return True
    except BlockingIOError:
        raise
    except OSError as error:
        if error.errno not in _NO_FLOCK:
            raise
        logger.warning("%s: this file system has no flock (%s); running without the "
                       "one-process lock", path, os.strerror(error.errno))
        return False


class LockedError(ValueError):
    """Another live process holds the run or search directory."""


def lock_path(directory):
    directory = os.path.abspath(directory)
    return os.path.join(os.path.dirname(directory), f".{os.path.basename(directory)}.lock")


def _held_error(directory, what, path, fd):
    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
    return LockedError(
        f"{directory} is in use by another {what} (process {holder}, lock "
        f"{path}); wait for it to finish or stop it first.")


def check_free(directory, what="run"):
    """`LockedError` at once if a live process holds `directory`; creates and writes
    nothing, so a command can refuse before it loads its inputs (it takes the lock with
    `exclusive` just before its first write)."""
    path = lock_path(directory)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file: nobody holds it
        return
    try:
        try:
            locked = _flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, path)
        except BlockingIOError:
            raise _held_error(directory, what, path, fd) from None
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(directory, what="run"):
    """Hold `directory` for this process; `LockedError` at once, naming the holder's PID,
    if another process holds it. Creates the parent directory and the lock file only."""
    path = lock_path(directory)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, path):
                break  # no flock here: held in name only
        except BlockingIOError:
            error = _held_error(directory, what, path, fd)
            os.close(fd)
            raise error from None
        # The holder we waited on may have removed the file: lock the one at `path`.
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)
            with contextlib.suppress(OSError):  # no flock on this file system
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
