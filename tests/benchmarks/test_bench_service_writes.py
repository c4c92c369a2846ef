"""The service benchmark's write accounting: /proc/self/io counts a disk write and not a tmpfs one, and the
journal figure comes from a real journal file (systemd-journal-remote) and grows with the entries."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from benchmarks import bench_service as bs


def test_proc_io_counts_disk_writes_not_tmpfs(tmp_path):
    if not Path("/dev/shm").is_dir():
        pytest.skip("no tmpfs at /dev/shm")
    before = bs.proc_io()
    shm = Path("/dev/shm") / f"murmur-test-{os.getpid()}"
    try:
        shm.write_bytes(b"x" * 200_000)
        mid = bs.proc_io()
        (tmp_path / "disk").write_bytes(b"y" * 200_000)
        after = bs.proc_io()
    finally:
        shm.unlink(missing_ok=True)
    assert mid["wchar"] - before["wchar"] >= 200_000  # every write call counts in wchar …
    assert mid["write_bytes"] - before["write_bytes"] < 100_000  # … but tmpfs is not storage
    if after["write_bytes"] == mid["write_bytes"] and Path(tmp_path).stat().st_dev == Path("/dev/shm").stat().st_dev:
        pytest.skip("tmp_path is on tmpfs here")
    assert after["write_bytes"] - mid["write_bytes"] >= 200_000


def _record(i: int) -> logging.LogRecord:
    return logging.LogRecord("murmur.service", logging.INFO, "/opt/murmur/current/device/appliance/service.py", 500 + i % 7,
                             "playlist: rotating to bundle id-%d (hour %d)", (i % 3, i), None, func="_maybe_rotate")


@pytest.mark.skipif(not bs.JOURNAL_REMOTE.exists(), reason="systemd-journal-remote is not installed")
def test_journal_bytes_are_measured_in_a_real_journal_and_grow_with_entries():
    small = bs.journal_bytes([_record(i) for i in range(11)])
    large = bs.journal_bytes([_record(i) for i in range(201)])
    assert small is not None and large is not None
    assert 0 < small < large
    per_entry = (large - small) / 190
    assert 50 < per_entry < 2000, per_entry  # an entry object, its message and a few small data objects
    assert bs.journal_bytes([]) is None
