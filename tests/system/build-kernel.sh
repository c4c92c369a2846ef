#!/usr/bin/env bash
# Build (once per machine) the booted system test's guest kernel from Debian's linux-source-6.1: x86_64 defconfig +
# kvm_guest.config + tests/system/kernel.config (gpio-sim, snd-aloop, configfs, seccomp, cgroup BPF …). Debian 12's
# packaged kernels have no GPIO_SIM, so a guest on them could not have simulated GPIO lines.
# Usage: tests/system/build-kernel.sh CACHE_DIR   → prints the directory holding bzImage, modules/ and config.
# The result is cached under CACHE_DIR/kernel-<key>, key = hash of the fragment, this script and the source
# package's version; about 15 min on 2 busy cores (built with nice), then reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: build-kernel.sh CACHE_DIR}
die() { echo "test-system: kernel: $*" >&2; exit 1; }
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) \
  || die "linux-source-6.1 is not installed: apt-get install linux-source-6.1 flex bison bc libelf-dev libssl-dev"
key=$(cat "$here/kernel.config" "$here/build-kernel.sh" <(echo "$src_version") | sha256sum | cut -c1-16)
out="$cache/kernel-$key"
if [ -f "$out/bzImage" ] && [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
tarball=/usr/src/linux-source-6.1.tar.xz
[ -f "$tarball" ] || die "$tarball is missing: apt-get install --reinstall linux-source-6.1"
build="$cache/kernel-build"
rm -rf "$build" "$out.tmp"
mkdir -p "$build" "$out.tmp"
echo "test-system: building the guest kernel from $tarball ($src_version) in $build; ~15 min, once" >&2
t0=$(date +%s)
tar -C "$build" -xf "$tarball"
cd "$build"/linux-source-6.1
make -s x86_64_defconfig >&2
./scripts/kconfig/merge_config.sh -m .config kernel/configs/kvm_guest.config "$here/kernel.config" >&2
make -s olddefconfig >&2
# every line of the fragment must have survived olddefconfig (a missing dependency silently drops an option)
missing=""
while IFS= read -r line; do
  case "$line" in CONFIG_*) grep -qxF "$line" .config || missing="$missing $line" ;; esac
done < "$here/kernel.config"
[ -z "$missing" ] || die "olddefconfig dropped:$missing (a dependency is missing from tests/system/kernel.config)"
jobs=$(( $(nproc) + 1 ))
nice -n 10 make -s -j"$jobs" bzImage modules >&2 || die "the kernel build failed (above); the tree is $build"
nice -n 10 make -s modules_install INSTALL_MOD_PATH="$out.tmp/modules" INSTALL_MOD_STRIP=1 >&2
cp arch/x86/boot/bzImage "$out.tmp/bzImage"
cp .config "$out.tmp/config"
make -s kernelrelease > "$out.tmp/release"
sync
touch "$out.tmp/.complete"
rm -rf "$out"
mv -T "$out.tmp" "$out"
cd / && rm -rf "$build"
echo "test-system: kernel built in $(( $(date +%s) - t0 )) s: $out" >&2
echo "$out"
