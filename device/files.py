"""Files replaced whole, so a reader (or a power cut) never sees a part of one; and their sha256.

The one implementation of "temporary sibling, fsync, rename, fsync the directory" for the device, the trainer,
the studio and the benchmarks (``deploy/pi_release.py`` keeps its own: it runs on the Pi with the standard library
only). New files follow the umask (mode 0o666 & ~umask, like ``open(path, "w")``) unless a mode is given.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import TracebackType
from typing import BinaryIO


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory: makes the renames and new names in it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PendingFile:
    """A temporary sibling of ``path`` open for writing (``file``, binary); ``commit()`` moves it over ``path``,
    ``abort()`` deletes it. As a context manager: commit on success, abort on an exception.

    ``tmp_path`` may also be written by name (e.g. ``numpy.lib.format.open_memmap``) before ``commit()``.
    ``durable`` fsyncs the file before the rename and the directory after it, so a power cut leaves the old or the
    new file (the SD card, the disk); without it nothing waits for the disk (tmpfs, rewritten every second).
    ``mode`` None: 0o666 & ~umask (the kernel applies the umask at creation); else exactly ``mode``.
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = True, mode: int | None = None) -> None:
        self.path = Path(path)
        self.durable = durable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            self.tmp_path = self.path.with_name(f".{self.path.name}.{os.urandom(6).hex()}.tmp")
            try:
                fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            except FileExistsError:
                continue
            break
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            self.file: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.tmp_path.unlink(missing_ok=True)
            raise
        self._done = False

    def commit(self) -> Path:
        """Flush (and fsync if durable) the temporary file, rename it over ``path``; idempotent. Returns ``path``."""
        if self._done:
            return self.path
        self._done = True
        try:
            self.file.flush()
            if self.durable:
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.file.close()
            self.tmp_path.unlink(missing_ok=True)
            raise
        if self.durable:
            fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Delete the temporary file; ``path`` is untouched. Idempotent."""
        if self._done:
            return
        self._done = True
        try:
            self.file.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> PendingFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()


def replace_file(path: str | os.PathLike[str], data: bytes | str, *, durable: bool = True,
                 mode: int | None = None) -> Path:
    """Replace ``path`` with ``data`` (str is written as UTF-8): readers see the old or the new file, never a part.

    ``durable`` and ``mode`` as for ``PendingFile``. Returns ``path``.
    """
    with PendingFile(path, durable=durable, mode=mode) as pending:
        pending.file.write(data.encode("utf-8") if isinstance(data, str) else data)
    return pending.path
