"""Bounded reads of local files: only regular files, and only up to a size the caller names.

A path a config or a command line names may be a FIFO (reading it blocks forever) or a symlink to
a device such as /dev/zero (reading it never ends and fills memory). The file is opened without
blocking and judged by fstat of what was opened, so a path swapped after a check cannot slip by.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mlops.errors import MlopsError

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def read_regular_file(
    path: str | Path, max_bytes: int, error: type[MlopsError], label: str | None = None, limit_name: str = ""
) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed), or `error` naming the file.

    Refused: a missing file, anything but a regular file, and a file larger than `max_bytes`
    (judged by its size, and again by what is actually read, since a file may grow meanwhile).
    """
    name = label or str(path)
    limit = f"the limit of {max_bytes}" + (f" ({limit_name})" if limit_name else "")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{name}: file not found") from None
    except OSError as err:
        raise error(f"{name}: cannot be read: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise error(f"{name}: is {kind}; only regular files are read")
        if info.st_size > max_bytes:
            raise error(f"{name}: {info.st_size} bytes, more than {limit}")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        try:
            payload = handle.read(max_bytes + 1)
        except OSError as err:
            raise error(f"{name}: cannot be read: {err.strerror or err}") from None
    if len(payload) > max_bytes:
        raise error(f"{name}: more bytes than {limit}")
    return payload
