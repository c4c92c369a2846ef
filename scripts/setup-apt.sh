#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the laptop side and the test suite need, if any is missing.
# Uses sudo when not root. Idempotent: does nothing when everything is present.
set -eu
packages=(
  python3-venv python3-dev build-essential pkg-config
  portaudio19-dev        # PyAudio builds against it
  libsystemd-dev         # systemd-python builds against it
  libsndfile1            # soundfile (decoding WAV/FLAC/OGG/MP3/AIFF)
  alsa-utils             # ALSA's file plugin gives tests a real output device without a sound card
  fluidsynth fluid-soundfont-gm  # vocoder tests/bench render real sampled bells and drums (FluidR3_GM)
  systemd                # systemd-analyze verify/security for the unit tests
  systemd-journal-remote # the service benchmark writes its log into a real journal file to count the bytes
  openssh-server rsync openssh-client  # deploy tests against a real sshd on 127.0.0.1
  chromium chromium-driver  # the studio's page is tested end to end in a real browser (Debian's, never downloaded)
  ${EXTRA_APT_PACKAGES:-}
)
# npm fetches axe-core (the studio's accessibility check) from the npm registry; a machine whose Node.js already
# brings npm keeps it (Debian's npm package would conflict with another source's nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
if ! command -v apt-get >/dev/null; then
  echo "setup: apt-get not found; install these packages with your system's package manager: ${missing[*]}" >&2
  exit 1
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
