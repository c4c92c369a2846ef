"""`python -m murmur.device verify`: what a deploy runs on the Pi before anything switches (imports, bundle, model, render)."""

from __future__ import annotations

import subprocess
import sys

from murmur import REPO_ROOT as REPO
from murmur.deploy.testing.loopback import variant_bundle

DEVICE_PYTHON = REPO / ".venv/device/bin/python"


def verify(*args: str) -> subprocess.CompletedProcess:
    python = str(DEVICE_PYTHON) if DEVICE_PYTHON.exists() else sys.executable
    return subprocess.run([python, "-m", "murmur.device", "verify", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_a_good_bundle_verifies_with_its_figures(tiny_bundle):
    proc = verify("--bundle", str(tiny_bundle))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("verify: OK:") and "runtime ai_edge_litert" in proc.stdout
    level = float(proc.stdout.split("level_dbfs ")[1].split(",")[0])
    assert -90 < level < 0


def test_a_model_the_runtime_cannot_run_fails_naming_the_file(tiny_bundle, tmp_path):
    broken = variant_bundle(tiny_bundle, tmp_path / "broken", "broken", break_model=True)
    proc = verify("--bundle", str(broken))
    assert proc.returncode == 1
    assert "verify: FAILED" in proc.stderr and "model.tflite" in proc.stderr


def test_a_bad_config_fails_before_any_render(tiny_bundle, tmp_path):
    config = tmp_path / "murmur.toml"
    config.write_text(f'[playback]\nbundle = "{tiny_bundle}"\nvolume_cap_db = 99.0\n')
    proc = verify("--bundle", str(tiny_bundle), "--config", str(config))
    assert proc.returncode == 1
    assert "volume_cap_db" in proc.stderr and "99" in proc.stderr


def test_not_a_bundle_says_so(tmp_path):
    proc = verify("--bundle", str(tmp_path))
    assert proc.returncode == 1 and "not a bundle" in proc.stderr
