"""Which playlist entry plays and since when, persisted in the StateDirectory (/var/lib/murmur) so that a reboot
resumes it. Written only when the entry changes, atomically and durably: a power cut leaves the old or the new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from murmur.device.files import replace_file

STATE_FILE = "playlist.json"


@dataclass
class PlaylistState:
    """Which playlist entry plays and since when (unix s); persisted so a reboot resumes it."""

    index: int = 0
    since_unix: float = 0.0


def read_playlist_state(state_dir: Path | None, bundles: tuple[Path, ...], now_unix: float) -> PlaylistState:
    """The saved position if it still fits the playlist (same entry path), else the start of the playlist."""
    if state_dir is None:
        return PlaylistState(0, now_unix)
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        saved_path, index, since = Path(data["bundle_path"]), int(data["index"]), float(data["since_unix"])
    except (OSError, ValueError, KeyError, TypeError):
        return PlaylistState(0, now_unix)
    if 0 <= index < len(bundles) and bundles[index] == saved_path:
        return PlaylistState(index, min(since, now_unix))
    if saved_path in bundles:  # the playlist was edited: follow the entry, restart its time
        return PlaylistState(bundles.index(saved_path), now_unix)
    return PlaylistState(0, now_unix)


def write_playlist_state(state_dir: Path | None, state: PlaylistState, bundle_path: Path) -> None:
    """Atomic, durable write (temp file, fsync, rename, fsync dir): a power cut leaves the old or the new one."""
    if state_dir is None:
        return
    payload = json.dumps({"index": state.index, "since_unix": state.since_unix, "bundle_path": str(bundle_path)})
    replace_file(state_dir / STATE_FILE, payload.encode(), durable=True)
