"""Replace a small file so that a reader never sees a part of it (status, playlist position)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_file(path: Path, data: bytes, *, mode: int = 0o600, durable: bool) -> None:
    """Write ``data`` to a temporary sibling and rename it over ``path``: readers see the old or the new file.

    ``durable`` adds an fsync of the file before the rename and of the directory after it, so a power cut also
    leaves the old or the new one (the SD card); without it nothing waits for the disk (tmpfs, rewritten every
    second).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
