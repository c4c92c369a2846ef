"""murmur.device.files: the one atomic, durable file replacement (bytes and text), its umask-following mode, and
the one sha256_file; and that the writers built on it (WAV renders) get a normal, readable mode."""

from __future__ import annotations

import hashlib
import os
import stat

import numpy as np
import pytest

from murmur.device import files
from murmur.device.dsp.wavio import WavWriter, write_wav
from murmur.device.files import PendingFile, replace_file, sha256_file


@pytest.fixture
def umask():
    """Set the process umask for one test; restored afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_to(mask: int) -> None:
        os.umask(mask)

    yield set_to
    os.umask(saved)


def mode_of(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replace_file_writes_bytes_and_text_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "state.json"
    replace_file(target, b"\x00old")
    assert target.read_bytes() == b"\x00old"
    replace_file(target, "néw\n")
    assert target.read_bytes() == "néw\n".encode()
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    target = tmp_path / "f.txt"
    replace_file(target, "x")
    assert mode_of(target) == expected


def test_an_explicit_mode_ignores_the_umask(tmp_path, umask):
    umask(0o077)
    target = tmp_path / "status.json"
    replace_file(target, "{}", mode=0o644, durable=False)
    assert mode_of(target) == 0o644


def test_a_rendered_wav_is_world_readable_under_umask_022(tmp_path, umask):
    umask(0o022)
    audio = np.zeros(100, dtype=np.float32)
    assert mode_of(write_wav(tmp_path / "render.wav", audio, 44100)) == 0o644
    with WavWriter(tmp_path / "stream.wav", 44100) as writer:
        writer.write(audio)
    assert mode_of(tmp_path / "stream.wav") == 0o644


def test_a_failed_write_keeps_the_old_file_and_drops_the_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    replace_file(target, "old")
    with pytest.raises(RuntimeError), PendingFile(target) as pending:
        pending.file.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_durable_fsyncs_the_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    replace_file(tmp_path / "a", b"1")
    assert events == ["file", "rename", "dir"]
    events.clear()
    replace_file(tmp_path / "b", b"2", durable=False)
    assert events == ["rename"]


def test_sha256_file_matches_hashlib_across_read_blocks(tmp_path):
    data = os.urandom((1 << 20) + 12345)  # more than one 1-MiB read block
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
