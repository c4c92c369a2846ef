#!/usr/bin/env bash
# Build (once per package list + kernel) the booted system test's disk image: a Debian 12 amd64 root made with
# mmdebstrap from Debian's packages, shaped like a fresh Raspberry Pi OS Lite as Raspberry Pi Imager leaves it
# (systemd as PID 1, openssh-server, dbus, udev, alsa-utils, python3, rsync, sudo; a user `pi` with password-less
# sudo and the test's ssh key; /boot/firmware/config.txt; Debian's stock kernel and initramfs, whose vmlinuz and
# initrd.img are put beside disk.img), plus the built guest kernel's modules (snd-aloop) and the
# guest-only stand-ins for the Pi's hardware (tests/system/guest/). Murmur itself is NOT in the image: the test
# installs it with `make deploy`, as a technician would.
# Usage: tests/system/build-image.sh CACHE_DIR KERNEL_DIR   → prints the image directory (disk.img, id_ed25519);
#        tests/system/build-image.sh CACHE_DIR --root-only  → only the Debian root (a tar), e.g. while the kernel builds;
#        tests/system/build-image.sh CACHE_DIR --arm64      → the arm64 guest's image: an arm64 root made under
#          qemu-user (binfmt_misc) with Debian's own kernel (linux-image-arm64), whose vmlinuz and initrd.img are
#          put beside disk.img (Debian's kernels have no gpio-sim: the arm64 guest has no GPIO lines).
# The image in there is pristine: each run boots a copy-on-write overlay of it (qemu-img -b), never the image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: build-image.sh CACHE_DIR KERNEL_DIR (or: CACHE_DIR --root-only | --arm64)}
kernel=${2:?usage: build-image.sh CACHE_DIR KERNEL_DIR (or: CACHE_DIR --root-only | --arm64)}
die() { echo "test-system: image: $*" >&2; exit 1; }
# What Raspberry Pi OS Lite has that the test relies on; python3-venv, gpiozero, PyAudio … are left to install.sh.
PACKAGES="systemd,systemd-sysv,udev,dbus,openssh-server,sudo,ifupdown,isc-dhcp-client,iproute2,kmod,procps,python3,alsa-utils,rsync,ca-certificates,less"
ARCH=amd64
# Debian's stock amd64 kernel too (with an initramfs of MODULES=list, as the arm64 root's): the guest kernel built
# for gpio-sim has no USB gadget or USB audio, Debian's has them as modules (dummy_hcd, libcomposite, usb_f_midi,
# snd-usb-audio): the MIDI test boots the same image on it (test_system_midi.py), the main scenario on the built one
ARCH_OPTS=(--setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo MODULES=list > "$1/etc/initramfs-tools/conf.d/murmur-guest.conf" && printf "virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n" > "$1/etc/initramfs-tools/modules"')
if [ "$kernel" != "--arm64" ]; then
  PACKAGES="$PACKAGES,initramfs-tools,linux-image-amd64"
else
  # Debian's stock arm64 kernel and its initramfs (initramfs-tools), made in the root under qemu-user: with
  # MODULES=list and only what the virt machine's disk needs (virtio, ext4), not Debian's default MODULES=most,
  # which took most of 21 min under emulation
  ARCH=arm64
  PACKAGES="$PACKAGES,initramfs-tools,linux-image-arm64"
  ARCH_OPTS=(--architectures=arm64
    --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo MODULES=list > "$1/etc/initramfs-tools/conf.d/murmur-guest.conf" && printf "virtio_pci\nvirtio_mmio\nvirtio_blk\nvirtio_net\next4\ncrc32c_generic\n" > "$1/etc/initramfs-tools/modules"')
fi
SUITES=("deb http://deb.debian.org/debian bookworm main" "deb http://deb.debian.org/debian bookworm-updates main"
        "deb http://deb.debian.org/debian-security bookworm-security main")
# 1. the Debian root, keyed by its package list (kernel-independent, so it is made while the kernel builds)
root_key=$( { echo "$PACKAGES"; printf '%s\n' "${SUITES[@]}"; printf '%s\n' "${ARCH_OPTS[@]}"; } \
           | sha256sum | cut -c1-16)
root_tar="$cache/root-$root_key.tar"
[ $ARCH = amd64 ] || root_tar="$cache/root-$ARCH-$root_key.tar"
if [ ! -f "$root_tar" ] && [ "${SYSTEM_IMAGE_IF_CACHED:-}" = 1 ]; then
  echo "test-system: image: no cached root $root_tar (SYSTEM_IMAGE_IF_CACHED=1: not building it)" >&2
  exit 3
fi
if [ ! -f "$root_tar" ]; then
  command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: apt-get install mmdebstrap"
  if [ $ARCH = arm64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "arm64 binaries cannot run here: mount binfmt_misc and update-binfmts --enable qemu-aarch64 (tests/system/run.sh does)"
    echo "test-system: building the arm64 guest's Debian 12 root with mmdebstrap under qemu-user (~10-25 min, once)" >&2
  else
    echo "test-system: building the guest's Debian 12 root with mmdebstrap (~1-2 min, once)" >&2
  fi
  t0=$(date +%s)
  nice -n 10 mmdebstrap --variant=apt --include="$PACKAGES" --aptopt='Acquire::Retries "3"' "${ARCH_OPTS[@]}" \
    --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash --groups sudo,audio,video,plugdev,netdev pi' \
    bookworm "${root_tar%.tar}.tmp.tar" "${SUITES[@]}" >&2 || die "mmdebstrap failed (above): is deb.debian.org reachable from this machine?"
  sync
  mv "${root_tar%.tar}.tmp.tar" "$root_tar"
  echo "test-system: root built in $(( $(date +%s) - t0 )) s: $root_tar" >&2
fi
[ "$kernel" = "--root-only" ] && exit 0

# 2. the image: that root + the kernel's modules + the guest's files, keyed by all of them
key=$( { echo "$root_key"; cat "$here/build-image.sh" "$here"/guest/*; echo "$kernel" "$ARCH";
         cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true; } | sha256sum | cut -c1-16)
out="$cache/image-$key"
if [ -f "$out/disk.img" ] && [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
for tool in mkfs.ext4 ssh-keygen; do command -v $tool >/dev/null || die "$tool is missing (apt-get install e2fsprogs openssh-client)"; done
[ $ARCH = arm64 ] || [ -d "$kernel/modules/lib/modules" ] || die "$kernel/modules/lib/modules is missing: rebuild the kernel (rm -rf $kernel)"
rm -rf "$out.tmp"
mkdir -p "$out.tmp/root"
root="$out.tmp/root"
t0=$(date +%s)
tar -C "$root" -xf "$root_tar"
ssh-keygen -q -t ed25519 -N '' -C murmur-system-test -f "$out.tmp/id_ed25519"

# as Raspberry Pi Imager leaves a card: host name, the user with password-less sudo and the laptop's key, ssh on
echo murmur-guest > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tmurmur-guest\n' > "$root/etc/hosts"
echo 'pi ALL=(ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/010_pi-nopasswd"
chmod 440 "$root/etc/sudoers.d/010_pi-nopasswd"
install -d -m 700 -o 1000 -g 1000 "$root/home/pi/.ssh"
install -m 600 -o 1000 -g 1000 "$out.tmp/id_ed25519.pub" "$root/home/pi/.ssh/authorized_keys"
mkdir -p "$root/boot/firmware"
printf '# Raspberry Pi OS keeps its firmware settings here; on the test guest the file is inert.\ndtparam=audio=on\n' \
  > "$root/boot/firmware/config.txt"
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\n' > "$root/etc/fstab"
printf 'auto lo\niface lo inet loopback\nauto eth0\niface eth0 inet dhcp\n' > "$root/etc/network/interfaces"
# the journal on the disk, as install.sh leaves it (the test reads the boot before a reboot or a power cut)
mkdir -p "$root/var/log/journal"
# the registries are reached through a proxy whose CA only this machine trusts: the guest trusts it too (apt's
# http needs nothing; pip's https needs it), and pip uses the system bundle
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$root/etc/pip.conf"
if [ $ARCH = amd64 ]; then
  # the guest kernel's modules (snd-aloop is one so that a test can boot with no sound card)
  cp -a "$kernel/modules/lib/modules/." "$root/lib/modules/"
  chroot "$root" depmod -a "$(cat "$kernel/release")"
  # the guest's stand-ins for the Pi's hardware (see the files): gpio-sim lines, a Pi board revision
  install -m 755 "$here/guest/murmur-guest-devices" "$root/usr/local/sbin/murmur-guest-devices"
  install -m 644 "$here/guest/murmur-guest-devices.service" "$root/etc/systemd/system/"
  mkdir -p "$root/etc/systemd/system/murmur.service.d"
  install -m 644 "$here/guest/murmur-guest.conf" "$root/etc/systemd/system/murmur.service.d/guest.conf"
  chroot "$root" systemctl enable murmur-guest-devices.service >/dev/null 2>&1
fi
# Debian's own kernel and initrd, booted by QEMU from outside the disk (-kernel/-initrd, no boot loader): the
# arm64 guest's kernel; on amd64 the MIDI test's (tests/system/test_system_midi.py)
vmlinuz=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)
[ -f "$vmlinuz" ] && [ -f "$initrd" ] || die "the $ARCH root has no /boot/vmlinuz-* and initrd.img-* (linux-image-$ARCH)"
cp "$vmlinuz" "$out.tmp/vmlinuz"
cp "$initrd" "$out.tmp/initrd.img"
basename "$vmlinuz" | sed 's/^vmlinuz-//' > "$out.tmp/release"
# snd-aloop (a module in both kernels) is loaded at boot unless the test removes this file (a late card)
echo snd-aloop > "$root/etc/modules-load.d/murmur-test-card.conf"
chroot "$root" systemctl enable ssh.service >/dev/null 2>&1 || true
rm -f "$root"/etc/ssh/ssh_host_*  # made at first boot by ssh's own unit? Debian's is not: make them now, per image
chroot "$root" ssh-keygen -A >/dev/null
echo "test-system: root ready in $(( $(date +%s) - t0 )) s; making the disk image" >&2
mkfs.ext4 -q -F -d "$root" -L root "$out.tmp/disk.img" 3G >&2  # it says "Creating regular file" even with -q
rm -rf "$root"
sync
touch "$out.tmp/.complete"
rm -rf "$out"
mv -T "$out.tmp" "$out"
echo "test-system: image built in $(( $(date +%s) - t0 )) s: $out" >&2
echo "$out"
