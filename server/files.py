"""Reading the files the server is pointed at and re-reads while it runs (the token file,
the TLS certificate and key): regular files only, never more than a cap, and what
they look like, to tell when they changed."""

from __future__ import annotations

import errno
import os
import stat


def file_signature(path: str) -> tuple[int, int, int, int] | None:
    """What the file at ``path`` looks like now (inode, device, size, modification time): it
    changes when the file is rewritten or a symlink on its path is swapped, as Kubernetes
    swaps a mounted Secret's; None when there is no such file."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_ino, status.st_dev, status.st_size, status.st_mtime_ns)


def read_regular_file(path: str, most: int) -> bytes:
    """At most ``most`` bytes of the regular file at ``path`` (symlinks followed, as
    Kubernetes' mounted Secrets are). OSError otherwise: opening a FIFO would wait for a
    writer for ever and a device such as /dev/zero never ends, either of which would hang
    the thread reading it (the event loop, or gRPC's handshakes). The file is opened
    without waiting and checked once open, so a swap between a check and the open cannot
    slip one through."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file")
        chunks, left = [], most
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
