"""User-given names and paths that the project writes to or deletes: the one containment
check every command uses before it joins a name to a directory or replaces a path."""

import contextlib
import os

__all__ = ["child_path", "refuse_symlink", "unwritable", "writable_destination"]


def child_path(parent, name, arg):
    """`parent/name`, or a `ValueError` naming `arg` if `name` would leave `parent`: a name
    is one path component (not empty, `.` or `..`, not absolute, no separator) that does not
    resolve through a symlink outside `parent`. Everything a command later replaces or
    deletes lives under such a path, so a name such as `..` never touches the user's files."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else name
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"`{arg}` must be a non-empty name; received {arg}={name!r}.")
    if text in (".", "..") or os.path.isabs(text) or "\0" in text \
            or any(sep and sep in text for sep in (os.sep, os.altsep)):
        raise ValueError(
            f"`{arg}` must be a plain name inside {parent} (not '.', '..', an absolute path "
            f"or a name with '/'); received {arg}={name!r}.")
    return refuse_symlink(os.path.join(parent, text), arg)


def refuse_symlink(path, arg):
    """A `ValueError` naming `arg` if `path` is a symlink: a command that replaces or
    deletes `path` must never follow a link into the folder it points to."""
    if os.path.islink(path):
        raise ValueError(
            f"`{arg}`: {path} is a symbolic link (to {os.readlink(path)}); the project never "
            "writes or deletes through a link: pass the real directory, or remove the link.")
    return path


def unwritable(directory):
    """Why nothing can be created in the existing `directory` ('read-only file system',
    'permission denied'), or None. access(2) answers EROFS even for root."""
    if os.access(directory, os.W_OK | os.X_OK):
        return None
    with contextlib.suppress(OSError):
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "read-only file system"
    return "permission denied"


def writable_destination(path, arg, flag):
    """The nearest existing ancestor of `path`, the directory a command creates `path` in;
    a `ValueError` naming `arg` and `flag` if `path` is empty, is or lies under a file, or
    cannot be written there. Writes nothing, so it runs before any input is loaded."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"`{arg}` must be a directory path ({flag}); received {arg}={path!r}.")
    existing = os.path.abspath(path)
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"`{arg}` ({flag} {os.fspath(path)}): {existing} is a file, not a "
                         "directory.")
    if problem := unwritable(existing):
        raise ValueError(f"`{arg}` ({flag} {os.fspath(path)}): cannot write {existing}: "
                         f"{problem}; pick another {flag}.")
    return existing
