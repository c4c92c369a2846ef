#!/usr/bin/env bash
# `make test-system`: the appliance booted (tests/system/test_system.py says what it checks). Builds once, cached
# outside the checkout in $SYSTEM_CACHE (default /var/cache/murmur-test-system, never in git): the guest kernel
# (build-kernel.sh: Debian's linux-source-6.1 with gpio-sim and snd-aloop; ~15-30 min on 2 busy cores) and the
# Debian 12 disk image (build-image.sh: mmdebstrap, ~2 min); then boots the image under QEMU (TCG) and drives it
# over ssh on 127.0.0.1 with the project's own `make deploy` / `make status`. Run output in out/system/.
# Env: SYSTEM_CACHE, SYSTEM_BUNDLE (a bundle dir; default: the tiny test bundle trained here once) with
# SYSTEM_SOURCE (the recording it was trained on), SYSTEM_LATE_CARD_WAIT_S (default 120), SYSTEM_STEPS (a pytest
# -k expression, e.g. "test_1 or test_2": the first install and the sound only), SYSTEM_BUILD_ONLY=1 (build the
# cache, boot nothing), SYSTEM_BOOT_IF_CACHED=1 (CI: boot only if the kernel was not built in this run),
# SYSTEM_KEEP_DISK=1 (boot the last run's disk again: skips the first install), ARGS (more pytest options).
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${SYSTEM_CACHE:-/var/cache/murmur-test-system}
OUT=out/system
mkdir -p "$OUT" "$CACHE"
start=$(date +%s)
die() { echo "test-system: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap, chroot and the image's file ownership need it)"
# Its own apt packages (not needed by anything else, so not in everyone's `make setup`).
EXTRA_APT_PACKAGES="mmdebstrap qemu-system-x86 qemu-utils e2fsprogs linux-source-6.1 flex bison bc libelf-dev libssl-dev" \
  bash scripts/setup-apt.sh
t0=$(date +%s)
kernel=$(bash tests/system/build-kernel.sh "$CACHE")
kernel_s=$(( $(date +%s) - t0 ))
t0=$(date +%s)
image=$(bash tests/system/build-image.sh "$CACHE" "$kernel")
image_s=$(( $(date +%s) - t0 ))
echo "test-system: kernel $kernel (${kernel_s} s), image $image (${image_s} s)"
if [ "${SYSTEM_BUILD_ONLY:-}" = 1 ]; then
  echo "test-system: SYSTEM_BUILD_ONLY=1: kernel and image cached in $CACHE; nothing booted"
  exit 0
fi
# CI (.ci/run): a run that had to build the kernel stops here, so that a machine without the cache stays within
# CI's time; the next run finds the cache and boots.
if [ "${SYSTEM_BOOT_IF_CACHED:-}" = 1 ] && [ "$kernel_s" -gt 120 ]; then
  echo "test-system: built the guest kernel in this run (${kernel_s} s): the booted steps run from the next run on (cache $CACHE)"
  exit 0
fi

bundle=${SYSTEM_BUNDLE:-}
source=${SYSTEM_SOURCE:-}
if [ -z "$bundle" ]; then
  # the tiny bundle the device tests use (tests/conftest.py), trained once per trainer code, and its source clip
  bundles="$OUT/test-bundle"
  code=$(.venv/trainer/bin/python -c "from benchmarks.common import trainer_code_hash; print(trainer_code_hash())")
  if [ "$(cat "$bundles/.trainer-hash" 2>/dev/null)" != "$code" ] || [ ! -f "$bundles/default/bundle.json" ]; then
    echo "test-system: training the tiny test bundle on this machine"
    rm -rf "$bundles"
    TF_CPP_MIN_LOG_LEVEL=2 .venv/trainer/bin/python -m tests.conftest "$bundles"
    echo "$code" > "$bundles/.trainer-hash"
  fi
  bundle="$bundles/default"
  source="$bundles/source.wav"
  [ -f "$source" ] || .venv/trainer/bin/python -c "
import soundfile, sys
from tests.conftest import _tiny_audio_samples
audio, rate = _tiny_audio_samples()
soundfile.write(sys.argv[1], audio, rate)" "$source"
fi
[ -f "$bundle/bundle.json" ] || die "SYSTEM_BUNDLE=$bundle has no bundle.json (a directory written by make train)"
[ -f "$source" ] || die "SYSTEM_SOURCE=$source: the recording the bundle was trained on is needed for the sound check"

status=0
MURMUR_TEST_SYSTEM=1 SYSTEM_KERNEL="$kernel" SYSTEM_IMAGE="$image" SYSTEM_BUNDLE="$(realpath "$bundle")" \
  SYSTEM_SOURCE="$(realpath "$source")" .venv/trainer/bin/python -m pytest -p no:cacheprovider tests/system \
  -m system -v ${SYSTEM_STEPS:+-k "$SYSTEM_STEPS"} ${ARGS:-} || status=$?
python3 - "$OUT/result.json" "$kernel_s" "$image_s" "$(( $(date +%s) - start ))" <<'PY' || true
import json, sys
path, kernel_s, image_s, wall = sys.argv[1], *map(int, sys.argv[2:])
try:
    result = json.load(open(path))
except (OSError, ValueError):
    result = {"passed": False}
result.update(kernel_build_or_reuse_s=kernel_s, image_build_or_reuse_s=image_s, wall_s=wall)
json.dump(result, open(path, "w"), indent=1)
PY
echo "test-system: $([ $status -eq 0 ] && echo PASS || echo FAIL) in $(( $(date +%s) - start )) s (kernel ${kernel_s} s, image ${image_s} s); figures $OUT/result.json"
exit $status
