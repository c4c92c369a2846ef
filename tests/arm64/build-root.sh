#!/usr/bin/env bash
# Build (once) an arm64 Debian Bookworm root for `make test-arm64`, the closest to Raspberry Pi OS Bookworm 64-bit
# that the open Debian mirrors give (RPi OS = Debian Bookworm arm64 + the Raspberry Pi archive, which adds
# python3-lgpio and a newer gpiozero; the venv's pip pins cover those here).
# Usage: tests/arm64/build-root.sh ROOT_DIR        (ROOT_DIR is a cache, e.g. out/arm64/root; never in git)
# Needs: mmdebstrap, qemu-user-static and binfmt_misc with qemu-aarch64 registered (tests/arm64/run.sh checks).
set -eu
root=${1:?usage: build-root.sh ROOT_DIR}
# systemd: as on the Pi; its systemd-analyze checks the unit file with the Pi's architecture's build
packages=python3,python3-venv,python3-pip,python3-gpiozero,python3-spidev,python3-pyaudio,python3-systemd,libasound2,alsa-utils,ca-certificates,rsync,systemd
if [ -x "$root/usr/bin/python3" ] && [ "$(cat "$root/.murmur-root-ok" 2>/dev/null)" = "$packages" ]; then
  echo "arm64 root: reusing $root"
  exit 0
fi
tmp="$root.tmp"
rm -rf "$tmp"
mkdir -p "$(dirname "$root")"
mmdebstrap --architectures=arm64 --variant=minbase --include="$packages" \
  --aptopt='Acquire::Retries "3"' bookworm "$tmp" http://deb.debian.org/debian
echo "$packages" > "$tmp/.murmur-root-ok"  # the root is rebuilt when the package list changes
rm -rf "$root"
mv -T "$tmp" "$root"
echo "arm64 root: built $root"
