"""The Makefile's interface: each target sets up only the environment it uses (render, play and the Pi commands
need no TensorFlow), and the documented targets exist."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from murmur import REPO_ROOT as ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None or not (ROOT / "requirements").is_dir(),
                                reason="the laptop's make and checkout (not on a Pi)")


def dry_run(*args: str) -> str:
    result = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("target", [
    ("render", "BUNDLE=b", "SECONDS=1", "OUT=x.wav"), ("play", "BUNDLE=b"), ("deploy", "PI=pi"), ("rollback", "PI=pi"),
    ("logs", "PI=pi"),
])
def test_device_side_targets_use_only_the_device_venv(target):
    out = dry_run(*target)
    assert ".venv/device/bin/python" in out and ".venv/trainer" not in out, out


@pytest.mark.parametrize("target", [("train", "DATA=d", "OUT=o"), ("demo",), ("test-fast",), ("lint",)])
def test_trainer_side_targets_use_the_trainer_venv(target):
    assert ".venv/trainer/bin/" in dry_run(*target)
