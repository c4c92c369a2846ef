#!/bin/sh
# Runs INSIDE the arm64 root (under qemu-aarch64, QEMU_CPU=cortex-a72, a Pi 4 /proc/cpuinfo): the Pi's install of
# the device dependency set into a venv, then the device checks. Called by tests/arm64/run.sh; exit 0 = pass.
set -eu
cd /opt/murmur/current
echo "arm64: $(uname -m), $(python3 --version), $(grep -m1 '^Model' /proc/cpuinfo || echo 'no Model line')"
# The Pi's venv build itself (pi_release.py venv: venvs/<key> beside any other, marker last), with pip reading the
# aarch64 wheels fetched by run.sh instead of PyPI; then the release's venv link, as `make deploy` makes it.
t0=$(date +%s)
PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/wheels python3 deploy/pi_release.py venv --requirements deploy/requirements-pi.txt
key=$(sha256sum deploy/requirements-pi.txt | cut -c1-16)
ln -sfn "../../venvs/$key" venv
VENV=/opt/murmur/current/venv
echo "arm64: venv venvs/$key ready in $(( $(date +%s) - t0 )) s"
# + the gpiozero 2 that Raspberry Pi OS ships in apt (Debian has 1.6), and pytest for the device tests.
if ! "$VENV/bin/python" -c "import pytest, importlib.metadata as m; assert m.version('gpiozero') >= '2'" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q --no-index --find-links /opt/wheels $EXTRA_WHEELS
fi
"$VENV/bin/python" - <<'PY'
import platform, numpy, ai_edge_litert, gpiozero, pyaudio, systemd.journal
from importlib.metadata import version
print(f"arm64: imports ok: {platform.machine()} numpy {numpy.__version__} ai-edge-litert {version('ai-edge-litert')} "
      f"gpiozero {version('gpiozero')} pyaudio from {pyaudio.__file__.rsplit('/', 2)[0]}, systemd (apt)")
PY
t0=$(date +%s)
"$VENV/bin/python" -m murmur.device verify --bundle /opt/murmur/bundle --seconds 2
echo "arm64: verify (load, step, render 2 s offline) took $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
"$VENV/bin/python" -m murmur.device render --bundle /opt/murmur/bundle --seconds 5 --out /tmp/arm64-render.wav --seed 1
python3 - <<'PY'
import wave, struct, math
with wave.open("/tmp/arm64-render.wav") as w:
    n, rate, width = w.getnframes(), w.getframerate(), w.getsampwidth()
    raw = w.readframes(n)
print(f"arm64: render wrote {n / rate:.2f} s at {rate} Hz, {width * 8}-bit")
assert abs(n / rate - 5.0) < 0.1, "render length is off"
PY
echo "arm64: render 5 s took $(( $(date +%s) - t0 )) s"
if [ -d tests ]; then
  # the laptop-side comparisons some tests make (librosa, soundfile): beside the venv, on pytest's path only
  if [ -n "${TEST_EXTRAS:-}" ] && [ "$(cat /opt/test-extras/.list 2>/dev/null)" != "$TEST_EXTRAS" ]; then
    rm -rf /opt/test-extras
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q --no-index --find-links /opt/wheels \
      --no-deps --target /opt/test-extras $TEST_EXTRAS
    echo "$TEST_EXTRAS" > /opt/test-extras/.list
  fi
  t0=$(date +%s)
  MURMUR_TFLITE_RUNTIME=ai_edge_litert GPIOZERO_PIN_FACTORY=mock PYTHONPATH=tests/arm64:/opt/test-extras \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider -p pi_subset $ARM64_TESTS
  echo "arm64: device tests took $(( $(date +%s) - t0 )) s"
fi
echo "arm64: PASS"
