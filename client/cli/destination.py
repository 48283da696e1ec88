"""Where get and stream put a path: stdout, or -o FILE replaced whole only when the command succeeds.

A failed command (server unreachable, invalid argument, deadline, Ctrl-C)
leaves an existing FILE as it was and no temporary file behind. Writers ask
for the stream or the file only when the first chunk arrives, so a call that
fails before that prints nothing at all on stdout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from contextlib import AbstractContextManager
from typing import IO


class Destination(AbstractContextManager):
    """stdout, or ``-o FILE`` written to a temporary file beside it and renamed over FILE on success.

    ``binary`` (npy): the file is written through a memmap of ``open_path()``;
    else json and csv go to ``open_text()``. Leaving the block without an
    exception syncs the temporary file to disk and renames it over FILE, so a
    reader sees the old file or the whole new one; with an exception the
    temporary file is removed. FILE keeps its permissions. A FILE that is a
    link is followed; one that is not a regular file (/dev/null, a pipe)
    cannot be replaced and is written in place.
    """

    def __init__(self, output: str | None, *, binary: bool) -> None:
        self.output = output
        self.started = False  # whether a writer has asked for the output yet
        self._binary = binary
        self._text: IO[str] | None = None
        self._path: str | None = None  # where the bytes go: the temporary file, or FILE in place
        self._final: str | None = None  # the file a temporary file replaces (None: stdout, or in place)
        self._temporary: str | None = None  # the temporary file, while it exists
        self._existed = False

    def __enter__(self) -> Destination:
        if self.output is None:
            self._text = sys.stdout
            return self
        final = os.path.realpath(self.output)  # through a link, the file it names
        try:
            mode: int | None = os.stat(final).st_mode
        except FileNotFoundError:
            mode = None
        self._existed = mode is not None
        try:
            if mode is not None and stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), self.output)
            if mode is not None and not stat.S_ISREG(mode):
                self._path = final
            else:
                self._final = final
                self._path = self._temporary = _create_beside(final, mode)
            if not self._binary:
                self._text = open(self._path, "w")  # closed in __exit__
        except OSError as error:
            self._remove_temporary()
            raise OSError(error.errno, error.strerror, self.output) from error
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            if self._text is not None and self._text is not sys.stdout:
                self._text.close()
            if self._temporary is not None and exc_type is None:
                _sync(self._temporary)
                os.replace(self._temporary, self._final)
                self._temporary = None
        finally:
            self._remove_temporary()

    def open_text(self) -> IO[str]:
        """The stream json and csv are written to (asked for with the first chunk)."""
        self.started = True
        return self._text

    def open_path(self) -> str:
        """The file npy is written to (asked for with the first chunk)."""
        self.started = True
        return self._path

    def failure_note(self) -> str | None:
        """What a failed command left of the output, for stderr; None when nothing needs saying."""
        if self._final is None:  # stdout, or a FILE written in place
            where = "on stdout" if self.output is None else f"written to {self.output}"
            return f"the output {where} is incomplete" if self.started else None
        return f"{self.output} was left as it was" if self._existed else f"{self.output} was not written"

    def _remove_temporary(self) -> None:
        if self._temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temporary)
            self._temporary = None


def _create_beside(final: str, mode: int | None) -> str:
    """A new empty file next to ``final`` (so a rename replaces it atomically), with its permissions."""
    folder, name = os.path.split(final)
    for _ in range(100):
        path = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.part")
        try:
            # 0o666 through the umask, as open() would create FILE; FILE's own mode if it exists.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            if mode is not None:
                os.fchmod(fd, stat.S_IMODE(mode))
        except OSError:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        return path
    raise FileExistsError(f"no free temporary name beside {final}")


def _sync(path: str) -> None:
    """Flush ``path`` to disk, so the rename never exposes a file whose data is not there yet."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
