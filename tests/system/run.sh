#!/usr/bin/env bash
# `make test-system`: the appliance booted (tests/system/test_system.py says what it checks). Builds once, cached
# outside the checkout in $SYSTEM_CACHE (default /var/cache/murmur-test-system, never in git): the guest kernel
# (build-kernel.sh: Debian's linux-source-6.1 with gpio-sim and snd-aloop; ~15-30 min on 2 busy cores) and the
# Debian 12 disk image (build-image.sh: mmdebstrap, ~2 min); then boots the image under QEMU (TCG) and drives it
# over ssh on 127.0.0.1 with the project's own `make deploy` / `make status`. Run output in out/system/.
# The arm64 guest (QEMU `virt`, cortex-a72, Debian's stock arm64 kernel; a shorter scenario, test_system.py says
# which steps and why; output in out/system-arm64/) runs after the x86_64 one when its image is cached, or as asked:
# SYSTEM_ARM64=auto (default: run it if its root is cached, never build the root), 1 (build it if missing: the root under
# qemu-user, ~10-25 min once; then run it), 0 (never), only (build if missing, run only the arm64 guest).
# Env: SYSTEM_CACHE, SYSTEM_BUNDLE (a bundle dir; default: the tiny test bundle trained here once) with
# SYSTEM_SOURCE (the recording it was trained on), SYSTEM_UPDATE_BUNDLE with SYSTEM_UPDATE_SOURCE (the update
# step's second bundle, the same STFT settings, another sound; default: tests/system/update_bundle.py's), SYSTEM_LATE_CARD_WAIT_S (default 120), SYSTEM_STEPS (a pytest
# -k expression, e.g. "test_1 or test_2": the first install and the sound only), SYSTEM_BUILD_ONLY=1 (build the
# cache, boot nothing), SYSTEM_BOOT_IF_CACHED=1 (CI: boot only if the kernel was not built in this run),
# SYSTEM_KEEP_DISK=1 (boot the last run's disk again: skips the first install), SYSTEM_MIDI_CYCLES (the MIDI test's
# hot-plug cycles, default 4; 100 is the bench figure's run, ~15 min more), SYSTEM_OSC_FLOOD (the MIDI guest's OSC
# flood, datagrams, default 3000), SYSTEM_LATENCY_REPEATS (its control -> sound measurements per channel, default 5),
# ARGS (more pytest options).
# After the x86_64 guest's scenario, test_system_midi.py boots the same image on Debian's stock kernel (its
# vmlinuz and initrd beside the disk) for MIDI with a real USB device (a dummy_hcd + f_midi gadget) and OSC from
# this machine (~7 min; output in out/system-midi/; SYSTEM_STEPS=midi runs it alone).
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${SYSTEM_CACHE:-/var/cache/murmur-test-system}
OUT=out/system
mkdir -p "$OUT" "$CACHE"
start=$(date +%s)
die() { echo "test-system: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap, chroot and the image's file ownership need it)"
ARM64=${SYSTEM_ARM64:-auto}
case "$ARM64" in auto|0|1|only) ;; *) die "SYSTEM_ARM64=$ARM64: use auto (default), 1, 0 or only" ;; esac
# Its own apt packages (not needed by anything else, so not in everyone's `make setup`).
EXTRA_APT_PACKAGES="mmdebstrap qemu-system-x86 qemu-system-arm qemu-user-static binfmt-support qemu-utils e2fsprogs
  linux-source-6.1 flex bison bc libelf-dev libssl-dev" bash scripts/setup-apt.sh

# the arm64 guest's image (root under qemu-user + Debian's arm64 kernel): built only when asked, else used if cached
arm64_image=""
arm64_image_s=0
if [ "$ARM64" != 0 ]; then
  t0=$(date +%s)
  if [ "$ARM64" = auto ]; then
    arm64_image=$(SYSTEM_IMAGE_IF_CACHED=1 bash tests/system/build-image.sh "$CACHE" --arm64) || arm64_image=""
    [ -n "$arm64_image" ] || echo "test-system: no cached arm64 guest image in $CACHE: the arm64 guest is not run (SYSTEM_ARM64=1 builds it, ~10-25 min once)"
  else
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then  # as tests/arm64/run.sh: arm64 programs under qemu-user
      [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
        || die "cannot mount binfmt_misc (a container without it cannot build the arm64 root)"
      update-binfmts --enable qemu-aarch64 || die "cannot register qemu-aarch64 with binfmt_misc"
    fi
    arm64_image=$(bash tests/system/build-image.sh "$CACHE" --arm64)
  fi
  arm64_image_s=$(( $(date +%s) - t0 ))
fi
kernel="" image="" kernel_s=0 image_s=0
if [ "$ARM64" != only ]; then
  t0=$(date +%s)
  kernel=$(bash tests/system/build-kernel.sh "$CACHE")
  kernel_s=$(( $(date +%s) - t0 ))
  t0=$(date +%s)
  image=$(bash tests/system/build-image.sh "$CACHE" "$kernel")
  image_s=$(( $(date +%s) - t0 ))
  echo "test-system: kernel $kernel (${kernel_s} s), image $image (${image_s} s)"
fi
if [ "${SYSTEM_BUILD_ONLY:-}" = 1 ]; then
  echo "test-system: SYSTEM_BUILD_ONLY=1: guest kernel and images cached in $CACHE; nothing booted"
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
exec 9>"$OUT/.bundles.lock"
flock 9  # one run at a time trains the test bundles (another run may be booting its guest with them)
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
# the update step's second bundle: the same recipe on a high-passed copy of the recording (update_bundle.py), so
# its sound can be told from the first's; trained once per trainer code like the first
update=${SYSTEM_UPDATE_BUNDLE:-$OUT/test-bundle/update}
update_source=${SYSTEM_UPDATE_SOURCE:-$OUT/test-bundle/update-source.wav}
if [ -z "${SYSTEM_UPDATE_BUNDLE:-}" ] && { [ ! -f "$update/bundle.json" ] || [ ! -f "$update_source" ]; }; then
  echo "test-system: training the update step's second bundle (a high-passed copy of the recording)"
  rm -rf "$update"
  TF_CPP_MIN_LOG_LEVEL=2 nice -n 10 .venv/trainer/bin/python -m tests.system.update_bundle "$update" "$update_source"
fi
[ -f "$update/bundle.json" ] || die "SYSTEM_UPDATE_BUNDLE=$update has no bundle.json"
[ -f "$update_source" ] || die "SYSTEM_UPDATE_SOURCE=$update_source: the recording the update bundle was trained on is needed"
[ -f "$bundle/bundle.json" ] || die "SYSTEM_BUNDLE=$bundle has no bundle.json (a directory written by make train)"
[ -f "$source" ] || die "SYSTEM_SOURCE=$source: the recording the bundle was trained on is needed for the sound check"
flock -u 9

# one guest's scenario: ARCH KERNEL_DIR IMAGE_DIR OUT_DIR BUILD_S
scenario() {
  local arch=$1 kernel=$2 image=$3 out=$4 build_s=$5 t0 status=0
  t0=$(date +%s)
  mkdir -p "$out"
  echo "test-system: the $arch guest"
  MURMUR_TEST_SYSTEM=1 SYSTEM_ARCH="$arch" SYSTEM_KERNEL="$kernel" SYSTEM_IMAGE="$image" \
    SYSTEM_BUNDLE="$(realpath "$bundle")" SYSTEM_SOURCE="$(realpath "$source")" \
    SYSTEM_UPDATE_BUNDLE="$(realpath "$update")" SYSTEM_UPDATE_SOURCE="$(realpath "$update_source")" \
    .venv/trainer/bin/python -m pytest -p no:cacheprovider tests/system -m system -v \
    ${SYSTEM_STEPS:+-k "$SYSTEM_STEPS"} ${ARGS:-} || status=$?
  python3 - "$out/result.json" "$build_s" "$(( $(date +%s) - t0 ))" <<'PY' || true
import json, sys
path, build_s, scenario_s = sys.argv[1], *map(int, sys.argv[2:])
try:
    result = json.load(open(path))
except (OSError, ValueError):
    result = {"passed": False}
result.update(cache_build_or_reuse_s=build_s, scenario_s=scenario_s)
json.dump(result, open(path, "w"), indent=1)
PY
  echo "test-system: $arch guest $([ $status -eq 0 ] && echo PASS || echo FAIL) in $(( $(date +%s) - t0 )) s; figures $out/result.json"
  return $status
}

status=0
if [ "$ARM64" != only ]; then
  scenario x86_64 "$kernel" "$image" "$OUT" $(( kernel_s + image_s )) || status=1
fi
if [ -n "$arm64_image" ]; then
  scenario arm64 "$arm64_image" "$arm64_image" out/system-arm64 "$arm64_image_s" || status=1
fi
echo "test-system: $([ $status -eq 0 ] && echo PASS || echo FAIL) in $(( $(date +%s) - start )) s (x86_64 kernel ${kernel_s} s, image ${image_s} s; arm64 image ${arm64_image_s} s)"
exit $status
