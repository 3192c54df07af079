"""Files the operator names (the config, the token file, the state file and its lock): read only when they
are regular files, within a size cap, and opened so that the open itself never blocks and never follows a
link where one must not be followed.

A FIFO without a writer holds a plain `open()` for good (signals do not end it: the call is retried), a
device like /dev/zero never ends, and a directory or a socket is a mistake worth naming.
"""

from __future__ import annotations

import os
import stat

# Absent where the platform lacks them (Windows has no FIFOs to block on, nor O_NOFOLLOW). No O_CLOEXEC,
# which Windows lacks too: Python opens every descriptor non-inheritable already (PEP 446).
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)

_KINDS = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


class FileRefused(OSError):
    """A file that exists but is not one to read: not a regular file, or larger than its cap. `strerror`
    (what `errors.os_reason` shows) says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(0, reason)


def size_text(size: int) -> str:
    """`64 KiB`, `1 MiB`: a cap as the messages and the README say it."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def not_regular(mode: int) -> str | None:
    """Why a file of this `st_mode` is not a regular file ("a FIFO (named pipe)"), or None if it is one."""
    if stat.S_ISREG(mode):
        return None
    return next((f"{kind}, not a regular file" for test, kind in _KINDS if test(mode)), "not a regular file")


def check_regular(fd: int) -> None:
    """Raise FileRefused unless the open `fd` is a regular file."""
    reason = not_regular(os.fstat(fd).st_mode)
    if reason is not None:
        raise FileRefused(reason)


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The whole of the regular file `path`, at most `limit` bytes. Raises OSError (FileNotFoundError,
    PermissionError, …) when it cannot be opened, FileRefused when it is not a regular file or is larger."""
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _NOCTTY | _BINARY)
    try:
        check_regular(fd)
        if os.fstat(fd).st_size > limit:
            raise FileRefused(f"larger than {size_text(limit)}")
        chunks: list[bytes] = []
        size = 0
        # Read to the end, not to st_size: /proc files say 0, and a file may grow while it is read.
        while chunk := os.read(fd, min(limit + 1 - size, 2**20)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise FileRefused(f"larger than {size_text(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)
