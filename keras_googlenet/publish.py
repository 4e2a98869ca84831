"""Atomic publishing: a finished file or directory replaces its target whole, or not at all
(the export, the KerasHub preset writer and the training run directory)."""

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile

import numpy as np

from keras_googlenet.paths import refuse_symlink

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["atomic_path", "current_umask", "discard_stage", "is_disk_full", "json_default",
           "path_size", "publish", "remove_path", "replace_owned", "staging_path",
           "write_json_atomic"]


def path_size(path):
    """Bytes in the file, or in every file under the directory, at `path`."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f))
                   for root, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def is_disk_full(error):
    """Whether `error` means the disk is full. h5py and TensorFlow raise their own types
    (RuntimeError, tf.errors) carrying errno 28 only in the message."""
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or any(
        sign in str(error) for sign in ("No space left on device", "errno = 28"))


def remove_path(path):
    """Delete a file or directory tree if it is there. A symlink is removed itself, never
    followed: what it points to is left alone."""
    if path and os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif path and os.path.lexists(path):
        os.remove(path)


def publish(tmp_path, target):
    """Move a finished file or directory onto `target` atomically (as far as the OS allows):
    a file with `os.replace`; a directory by renaming the old one aside and the new one in,
    then deleting the old one (restored if the second rename fails)."""
    # mkstemp/mkdtemp create 0600/0700; published artefacts get the usual umask mode.
    os.chmod(tmp_path, (0o777 if os.path.isdir(tmp_path) else 0o666) & ~current_umask())
    if not os.path.isdir(tmp_path):
        os.replace(tmp_path, target)
        return
    backup = None
    if os.path.lexists(target):
        backup = tempfile.mkdtemp(dir=os.path.dirname(target),
                                  prefix=f".{os.path.basename(target)}.old-")
        os.rmdir(backup)
        os.rename(target, backup)
    try:
        os.rename(tmp_path, target)
    except BaseException:
        if backup is not None:
            os.rename(backup, target)
        raise
    remove_path(backup)


def staging_path(target):
    """The sibling a replacement of `target` is built in (`--overwrite`): a stable name, so
    rerunning an interrupted replacement resumes it, and the finished `target` stays as it
    was until `replace_owned` swaps the new one in."""
    target = os.path.abspath(target)
    return os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.replacement")


def replace_owned(staging, target, owned):
    """Swap the finished directory `staging` in for `target` in one rename. Entries of the
    old `target` for which `owned(name)` is false (the user's own files) are moved into the
    new one first, so only what the project wrote is removed, and moved back if the swap
    fails (a mount point, a full disk). The new directory keeps the old one's permission
    bits. A symlinked `target` is never followed."""
    refuse_symlink(target, "target")
    # Two swaps of one directory at once would each move the files the other listed (and
    # one would see no directory at all between the other's two renames).
    with _directory_lock(os.path.dirname(os.path.abspath(target))):
        if not os.path.isdir(target):
            publish(staging, target)
            return
        mode = stat.S_IMODE(os.stat(target).st_mode)
        moved = []
        try:
            for name in os.listdir(target):
                if not owned(name) and not os.path.lexists(os.path.join(staging, name)):
                    os.rename(os.path.join(target, name), os.path.join(staging, name))
                    moved.append(name)
            publish(staging, target)
        except BaseException:
            for name in moved:  # the old directory is still in place: give its files back
                with contextlib.suppress(OSError):
                    os.rename(os.path.join(staging, name), os.path.join(target, name))
            raise
        os.chmod(target, mode)


@contextlib.contextmanager
def _directory_lock(directory):
    """An exclusive `flock` on `directory` itself for the few renames of a swap: nothing
    is created, and the kernel drops it if the process dies."""
    with contextlib.ExitStack() as stack:
        # Unlocked where no lock can be had: a parent we may write but not read, NFS (no
        # flock on a read-only descriptor), Lustre without flock, Windows (no fcntl).
        with contextlib.suppress(OSError, AttributeError):
            fd = os.open(directory, os.O_RDONLY)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield


def discard_stage(stage, created):
    """Remove the entries named in `created` from the staging directory `stage`, then the
    directory itself. Returns False (and keeps it) when anything else is left there: the
    user's files that a failed `replace_owned` could not move back are never deleted."""
    if not stage or not os.path.isdir(stage) or os.path.islink(stage):
        return True
    for name in set(os.listdir(stage)).intersection(created):
        remove_path(os.path.join(stage, name))
    try:
        os.rmdir(stage)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a free temporary path beside `path`; publish it onto `path` only if the block
    succeeds, else delete it. `suffix` keeps the extension writers insist on (Keras wants
    `.keras` and `.weights.h5`)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.path.basename(path)}.", suffix=suffix,
                               dir=directory)
    os.close(fd)
    os.remove(tmp)  # writers such as h5py refuse some existing files
    try:
        yield tmp
        publish(tmp, path)
    finally:
        remove_path(tmp)


def current_umask(status="/proc/self/status"):
    """The process umask, read without changing it where Linux reports it in `status`.
    Elsewhere it is set and set back, which a thread creating a file in between would see."""
    with contextlib.suppress(OSError), open(status, encoding="ascii") as f:  # no /proc: macOS
        for line in f:
            if line.startswith("Umask:"):  # Linux 4.7 and later
                return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def write_json_atomic(obj, path):
    """Write `obj` as indented JSON to `path` atomically (numpy values as plain ones)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=json_default)
        f.write("\n")


def json_default(value):
    """`json.dump`'s `default`: numpy scalars and arrays as Python values; `TypeError` for
    anything else, so that an unexpected object fails loudly instead of being stringified."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
