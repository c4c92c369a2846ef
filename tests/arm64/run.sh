#!/usr/bin/env bash
# `make test-arm64`: the device side on the Pi's CPU architecture. An arm64 Debian Bookworm root (built once by
# mmdebstrap, cached under out/arm64/, never in git) runs under qemu-aarch64 (binfmt_misc, QEMU_CPU=cortex-a72):
# the Pi's venv install of deploy/requirements-pi.txt from PyPI's aarch64 wheels, imports of the apt-provided
# modules, `device verify` and `device render` of a bundle, and a device test subset (ARM64_TESTS).
# The trap (docs/ARCHITECTURE.md §7): ai-edge-litert reads /proc/cpuinfo and crashes on the host's x86 one, so a
# Raspberry Pi 4 cpuinfo is bind-mounted over it, in a private mount namespace (unshare -m) that vanishes with the run.
# Emulated timings mean nothing; pass/fail does. Result: out/arm64/result.json (benchmarks/bench_deploy.py reports it).
# Env: ARM64_ROOT (root dir), BUNDLE (bundle dir; default: a tiny one trained here once), ARM64_TESTS.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
ROOT_DIR=$(realpath -m "${ARM64_ROOT:-out/arm64/root}")
OUT=out/arm64
mkdir -p "$OUT"
LOG="$OUT/last-run.log"
RESULT="$OUT/result.json"
start=$(date +%s)
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1

die() { echo "test-arm64: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap, chroot and mounts in a private namespace need it)"
# Its own apt packages (not needed by anything else, so not in everyone's `make setup`).
EXTRA_APT_PACKAGES="mmdebstrap qemu-user-static binfmt-support arch-test" bash scripts/setup-apt.sh
for pair in mmdebstrap:mmdebstrap qemu-aarch64-static:qemu-user-static unshare:util-linux update-binfmts:binfmt-support arch-test:arch-test; do
  command -v "${pair%%:*}" >/dev/null || die "${pair%%:*} is missing: apt-get install ${pair##*:} (scripts/setup-apt.sh with EXTRA_APT_PACKAGES)"
done
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
    || die "cannot mount binfmt_misc (a container without it cannot run arm64 binaries)"
  update-binfmts --enable qemu-aarch64 || die "cannot register qemu-aarch64 with binfmt_misc"
fi
arch-test arm64 >/dev/null || die "arm64 binaries do not run here even with qemu-aarch64 registered"

t0=$(date +%s)
bash tests/arm64/build-root.sh "$ROOT_DIR"
root_s=$(( $(date +%s) - t0 ))

# Trained bundles for the device tests (tests/conftest.py TINY_VARIANTS), built here once per trainer code: the
# root has no TensorFlow, so the tests find them through $MURMUR_TEST_BUNDLES instead of training.
TEST_BUNDLES="$OUT/test-bundles"
code=$(cd "$REPO" && .venv/trainer/bin/python -c "from benchmarks.common import trainer_code_hash; print(trainer_code_hash())")
if [ "$(cat "$TEST_BUNDLES/.trainer-hash" 2>/dev/null)" != "$code" ] || [ ! -f "$TEST_BUNDLES/vocoder_clips/names.json" ]; then
  echo "test-arm64: training the tiny test bundles on this machine"
  rm -rf "$TEST_BUNDLES"
  TF_CPP_MIN_LOG_LEVEL=2 .venv/trainer/bin/python -m tests.conftest "$TEST_BUNDLES"
  echo "$code" > "$TEST_BUNDLES/.trainer-hash"
fi
BUNDLE_DIR=${BUNDLE:-}
if [ -z "$BUNDLE_DIR" ] || [ ! -f "$BUNDLE_DIR/bundle.json" ]; then
  BUNDLE_DIR="$TEST_BUNDLES/default"
fi

# aarch64 wheels from PyPI, fetched by the host's pip (its proxy and CA settings apply; the root has neither) and
# installed inside by the arm64 pip with --no-index: the same wheels a Pi's pip would pick.
PLATFORMS=""
for minor in $(seq 17 36); do PLATFORMS="$PLATFORMS --platform manylinux_2_${minor}_aarch64"; done
# what a plain Debian root lacks of Raspberry Pi OS's apt: the pins of requirements-pi.txt's #if-system-lacks lines
FALLBACK_PINS=$(sed -n 's/^#if-system-lacks[^:]*:[[:space:]]*//p' deploy/requirements-pi.txt | tr '\n' ' ')
EXTRA_WHEELS="$FALLBACK_PINS pytest==9.2.0 iniconfig==2.3.1 pluggy==1.7.0 Pygments==2.21.0"
# What some device tests compare against on the laptop too (librosa's STFT and Griffin-Lim, soundfile's reader):
# installed beside the Pi's venv in /opt/test-extras, on pytest's path only, never into the venv.
TEST_EXTRAS="librosa==0.11.0 soundfile==0.14.0 audioread==3.1.0 decorator==5.3.1 joblib==1.6.0 lazy-loader==0.6
  msgpack==1.2.4 numba==0.68.1 llvmlite==0.50.0 pooch==1.9.0 platformdirs==4.14.7 requests==2.34.2 certifi==2026.10.18
  charset-normalizer==3.5.2 idna==3.20 urllib3==2.8.0 scikit-learn==1.9.1 scipy==1.17.1 soxr==1.1.0
  threadpoolctl==3.8.0 cffi==2.1.1 pycparser==3.12 narwhals==2.29.0 cloudpickle==3.1.2"
TEST_EXTRAS=$(echo $TEST_EXTRAS)
mkdir -p "$OUT/wheels"
.venv/trainer/bin/pip download -q --disable-pip-version-check --only-binary=:all: $PLATFORMS \
  --platform manylinux2014_aarch64 --platform linux_aarch64 --python-version 3.11 --implementation cp \
  -d "$OUT/wheels" -r deploy/requirements-pi.txt $EXTRA_WHEELS
.venv/trainer/bin/pip download -q --disable-pip-version-check --only-binary=:all: --no-deps $PLATFORMS \
  --platform manylinux2014_aarch64 --platform linux_aarch64 --python-version 3.11 --implementation cp \
  -d "$OUT/wheels" $TEST_EXTRAS
mkdir -p "$ROOT_DIR/opt/wheels"

# The code and the bundle where a deploy puts them.
release="$ROOT_DIR/opt/murmur/releases/arm64-test"
mkdir -p "$release" "$ROOT_DIR/opt/murmur/bundle"
rsync -a --delete --exclude __pycache__ --exclude arm64/ murmur device deploy tests benchmarks pyproject.toml Makefile "$release/"
mkdir -p "$release/tests/arm64" && cp tests/arm64/inside.sh tests/arm64/pi_subset.py "$release/tests/arm64/"
ln -sfn releases/arm64-test "$ROOT_DIR/opt/murmur/current"
rsync -a --delete "$BUNDLE_DIR/" "$ROOT_DIR/opt/murmur/bundle/"
rsync -a --delete "$TEST_BUNDLES/" "$ROOT_DIR/opt/murmur/test-bundles/"
cp -L /etc/resolv.conf "$ROOT_DIR/etc/resolv.conf"

# The device tests (tests/device, and the unit file's): not the trainer's, deploy's, studio's, benches' (laptop);
# tests/arm64/pi_subset.py skips, with the reason, the ones that need the laptop (training, make, the laptop's
# other venvs, real GPIO); the trained bundles and the vocoder's reference clips come from $MURMUR_TEST_BUNDLES.
TESTS=${ARM64_TESTS:-tests/device tests/deploy/test_service_unit.py}
status=0
ROOT_DIR="$ROOT_DIR" REPO="$REPO" ARM64_TESTS="$TESTS" EXTRA_WHEELS="$EXTRA_WHEELS" TEST_EXTRAS="$TEST_EXTRAS" QEMU_CPU=cortex-a72 unshare --mount --propagation private sh -eu -c '
  mount -t proc proc "$ROOT_DIR/proc"
  mount --bind "$REPO/tests/arm64/cpuinfo-pi4.txt" "$ROOT_DIR/proc/cpuinfo"
  mount --rbind /dev "$ROOT_DIR/dev"
  mount -t sysfs sysfs "$ROOT_DIR/sys"
  mount -t tmpfs tmpfs "$ROOT_DIR/tmp"
  mount --bind "$REPO/out/arm64/wheels" "$ROOT_DIR/opt/wheels"
  chroot "$ROOT_DIR" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root QEMU_CPU=cortex-a72 \
    ARM64_TESTS="$ARM64_TESTS" EXTRA_WHEELS="$EXTRA_WHEELS" TEST_EXTRAS="$TEST_EXTRAS" TF_CPP_MIN_LOG_LEVEL=2 \
    MURMUR_TEST_BUNDLES=/opt/murmur/test-bundles /bin/sh /opt/murmur/current/tests/arm64/inside.sh
' || status=$?

wall=$(( $(date +%s) - start ))
passed=$([ $status -eq 0 ] && echo true || echo false)
python3 - "$RESULT" "$passed" "$wall" "$root_s" "$LOG" "$TESTS" <<'PY'
import json, sys, time
path, passed, wall, root_s, log, tests = sys.argv[1:]
lines = [l.strip() for l in open(log, errors="replace") if l.startswith(("arm64:", "verify:")) or " passed" in l or " failed" in l]
json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "passed": passed == "true", "wall_s": int(wall),
           "root_build_s": int(root_s), "tests": tests, "lines": lines[-20:]}, open(path, "w"), indent=1)
PY
echo "test-arm64: $([ $status -eq 0 ] && echo PASS || echo FAIL) in ${wall} s (root build/reuse ${root_s} s); log $LOG"
exit $status
