"""The booted system test runs only under `make test-system` (tests/system/run.sh sets MURMUR_TEST_SYSTEM=1 and
the cached kernel and image); `make test` skips it: it boots a QEMU guest for many minutes."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "system: boots a QEMU guest (make test-system); skipped by make test")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("MURMUR_TEST_SYSTEM") == "1":
        return
    skip = pytest.mark.skip(reason="booted system test: run `make test-system` (root, QEMU; cached under "
                                   "/var/cache/murmur-test-system)")
    for item in items:
        if "system" in item.keywords:
            item.add_marker(skip)
