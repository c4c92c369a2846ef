#!/bin/sh
# First install of Murmur on a Raspberry Pi (64-bit Raspberry Pi OS Bookworm). Idempotent: run it again at any
# time; it only does what is missing and never overwrites /etc/murmur/murmur.toml once it exists.
# `make deploy PI=host` runs it when the Pi lacks it (or when this file changed). By hand:
#   sudo sh deploy/install.sh                    install / repair
#   sudo sh deploy/install.sh --hat hifiberry-dac   also enable an audio HAT's overlay in config.txt (then reboot)
#   sh deploy/install.sh --check                  only check this Pi and print hints (nothing is changed)
#   sudo sh deploy/install.sh --journal volatile  keep the system log in RAM only (no log writes to the SD card;
#                                                 lost at reboot); --journal persistent (the default) keeps it on
#                                                 the card, capped at 32 MB. Re-running without --journal keeps it.
# What it does: checks (64-bit, Bookworm, SPI when knobs need it); apt packages; the venv for requirements-pi.txt
# in /opt/murmur/venvs/<key> (--system-site-packages; pi_release.py venv); the `murmur` user (audio gpio spi);
# the unit if none is installed (afterwards each release installs its own when it goes live); the config if absent;
# at boot the performance CPU governor and murmur-recover.service (undoes a deploy a power cut interrupted);
# journald limits for an appliance (/etc/systemd/journald.conf.d/murmur.conf); hints for the sound card.
# Not a Raspberry Pi: MURMUR_ALLOW_ARCH=<uname -m> lets another 64-bit machine through the CPU check (the booted
# system test's x86_64 guest, tests/system; inventory `env`); MURMUR_ALLOW_OS=1 another OS than Bookworm.
# Plain Debian (not Raspberry Pi OS) works too: python3-lgpio, which only the Raspberry Pi archive has, is skipped and
# the venv takes lgpio (and gpiozero 2) from PyPI instead (deploy/requirements-pi.txt, "#if-system-lacks" lines).
# Test seams: MURMUR_ROOT (filesystem prefix, default empty), MURMUR_PIP (pip command), and PATH.
set -eu

ROOT=${MURMUR_ROOT:-}
HERE=$(cd "$(dirname "$0")" && pwd)
BASE="$ROOT/opt/murmur"
APT_PACKAGES="python3 python3-venv python3-gpiozero python3-lgpio python3-spidev python3-pyaudio python3-systemd rsync alsa-utils"
# Only in the Raspberry Pi archive (not in Debian's): skipped where apt has no such package; the venv then gets
# the module from PyPI (deploy/requirements-pi.txt, "#if-system-lacks").
APT_OPTIONAL="python3-lgpio"
HAT=""
CHECK_ONLY=0
JOURNAL=""

while [ $# -gt 0 ]; do
  case "$1" in
    --hat) HAT=${2:?--hat needs an overlay name, e.g. hifiberry-dac}; shift 2 ;;
    --check) CHECK_ONLY=1; shift ;;
    --journal)
      JOURNAL=${2:?--journal needs persistent or volatile}; shift 2
      case "$JOURNAL" in persistent|volatile) ;; *) echo "install.sh: --journal $JOURNAL: use persistent or volatile" >&2; exit 2 ;; esac ;;
    -h|--help) sed -n '2,/^# Test seams/p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "install: $*"; }
die() { echo "install: STOP: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------- checks
arch=$(uname -m)
case "$arch" in
  aarch64|arm64) ;;
  "${MURMUR_ALLOW_ARCH:-}")
    say "CPU architecture $arch is not a Raspberry Pi's; going on because MURMUR_ALLOW_ARCH=$arch (a test machine, e.g. the booted system test's guest)" ;;
  armv6l|armv7l|armhf) die "this is a 32-bit OS ($arch). Murmur needs Raspberry Pi OS (64-bit) Bookworm: there are no 32-bit LiteRT wheels. Re-image the card with Raspberry Pi Imager, choosing the 64-bit OS." ;;
  *) die "CPU architecture $arch is not a Raspberry Pi's aarch64; run this on the Pi (64-bit Raspberry Pi OS Bookworm), or set MURMUR_ALLOW_ARCH=$arch to install on this machine anyway (tests)" ;;
esac

codename=""
if [ -r "$ROOT/etc/os-release" ]; then
  codename=$(sed -n 's/^VERSION_CODENAME=//p' "$ROOT/etc/os-release" | tr -d '"')
fi
if [ "$codename" != "bookworm" ] && [ "${MURMUR_ALLOW_OS:-}" != "1" ]; then
  die "OS is '${codename:-unknown}' (from $ROOT/etc/os-release); Murmur is tested on Raspberry Pi OS Bookworm (64-bit). Re-image, or set MURMUR_ALLOW_OS=1 to try anyway."
fi

if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ] && [ $CHECK_ONLY -eq 0 ]; then
  die "run as root: sudo sh $0"
fi
for tool in python3; do
  command -v "$tool" >/dev/null 2>&1 || [ $CHECK_ONLY -eq 0 ] || die "$tool is missing"
done

# config.txt moved to the FAT partition's /boot/firmware in Bookworm.
BOOT_CONFIG="$ROOT/boot/firmware/config.txt"
[ -f "$BOOT_CONFIG" ] || BOOT_CONFIG="$ROOT/boot/config.txt"

# Knobs that are pots read an MCP3008 over SPI: with knobs enabled, SPI must be on.
CONFIG="$ROOT/etc/murmur/murmur.toml"
needs_spi=no
if [ -f "$CONFIG" ] && command -v python3 >/dev/null 2>&1; then
  needs_spi=$(python3 - "$CONFIG" <<'EOF' || echo unreadable
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    knobs = tomllib.load(f).get("knobs", {})
pots = [k for k, v in knobs.items() if isinstance(v, dict) and v.get("type") == "pot"]
print("yes" if knobs.get("enabled", True) and pots else "no")  # the knob parser treats a missing enabled as on
EOF
)
  [ "$needs_spi" = unreadable ] && die "$CONFIG is not valid TOML; fix it (python3 -m murmur.device verify --config shows where) and run again"
fi
spi_on=no
if ls "$ROOT"/dev/spidev* >/dev/null 2>&1 || { [ -f "$BOOT_CONFIG" ] && grep -Eq '^[[:space:]]*dtparam=spi=on' "$BOOT_CONFIG"; }; then
  spi_on=yes
fi
if [ "$needs_spi" = yes ] && [ "$spi_on" = no ]; then
  die "$CONFIG enables pot knobs (MCP3008 over SPI) but SPI is off. Turn it on: sudo raspi-config nonint do_spi 0 (or add dtparam=spi=on to $BOOT_CONFIG), reboot, and run this again."
fi
say "checks passed: $arch, ${codename:-unknown}, SPI ${spi_on} (needed: ${needs_spi})"

# ---------------------------------------------------------------------------------------------- sound card hints
hints() {
  if command -v aplay >/dev/null 2>&1; then
    cards=$(aplay -l 2>/dev/null | sed -n 's/^card [0-9]*: \([^ ]*\) \[\(.*\)\], device.*/\1 (\2)/p' | sort -u)
    if [ -n "$cards" ]; then
      say "sound cards (set [playback] output_device in $CONFIG to part of a NAME, never a number):"
      echo "$cards" | sed 's/^/install:   /'
    else
      say "no sound card found by aplay -l; for an audio HAT add its overlay (sh install.sh --hat NAME) and reboot"
    fi
  fi
  overlays=""
  [ -f "$BOOT_CONFIG" ] && overlays=$(grep -E '^[[:space:]]*dtoverlay=' "$BOOT_CONFIG" | tr '\n' ' ' || true)
  say "overlays in $BOOT_CONFIG: ${overlays:-none}. Common HATs: hifiberry-dac (DAC/pHAT/MiniAmp), hifiberry-dacplus,"
  say "  iqaudio-dacplus, googlevoicehat-soundcard; add dtparam=audio=off to silence the on-board jack."
}

if [ $CHECK_ONLY -eq 1 ]; then
  hints
  exit 0
fi

if [ -n "$HAT" ]; then
  [ -f "$BOOT_CONFIG" ] || die "$BOOT_CONFIG not found; is this a Raspberry Pi OS image?"
  if grep -Eq "^[[:space:]]*dtoverlay=$HAT([,[:space:]]|\$)" "$BOOT_CONFIG"; then
    say "dtoverlay=$HAT already in $BOOT_CONFIG"
  else
    cp "$BOOT_CONFIG" "$BOOT_CONFIG.murmur-backup"
    printf '\n# audio HAT for Murmur (install.sh --hat)\ndtoverlay=%s\n' "$HAT" >> "$BOOT_CONFIG"
    sync
    say "added dtoverlay=$HAT to $BOOT_CONFIG (backup: $BOOT_CONFIG.murmur-backup); reboot for it to take effect"
  fi
fi

# ---------------------------------------------------------------------------------------------- apt
missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update -qq
  wanted=""
  for p in $missing; do
    case " $APT_OPTIONAL " in
      *" $p "*)
        if ! apt-cache show "$p" >/dev/null 2>&1; then
          say "$p: not in this OS's apt archive (plain Debian; Raspberry Pi OS has it): the venv takes it from PyPI"
          continue
        fi ;;
    esac
    wanted="$wanted $p"
  done
  say "apt packages:$wanted"
  [ -z "$wanted" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $wanted
else
  say "apt packages present"
fi

# ---------------------------------------------------------------------------------------------- user
for group in audio gpio spi; do
  getent group "$group" >/dev/null 2>&1 || groupadd --system "$group"
done
if getent passwd murmur >/dev/null 2>&1; then
  say "user murmur exists"
else
  useradd --system --user-group --home-dir /var/lib/murmur --no-create-home --shell /usr/sbin/nologin murmur
  say "created user murmur"
fi
usermod -a -G audio,gpio,spi murmur
# GPIO and SPI device nodes for those groups: Raspberry Pi OS's udev rules (99-com.rules) give /dev/gpiochip* to
# gpio and /dev/spidev* to spi; plain Debian leaves them root-only, so the service could not read its knobs.
UDEV_RULE="$ROOT/etc/udev/rules.d/60-murmur-gpio.rules"
if grep -qsE 'GROUP="gpio"' "$ROOT"/etc/udev/rules.d/*.rules "$ROOT"/lib/udev/rules.d/*.rules "$ROOT"/usr/lib/udev/rules.d/*.rules \
   && [ ! -f "$UDEV_RULE" ]; then
  say "udev rules for gpio/spi present (Raspberry Pi OS)"
else
  mkdir -p "$(dirname "$UDEV_RULE")"
  printf '%s\n' '# Installed by Murmur install.sh: GPIO and SPI for the murmur user (as Raspberry Pi OS 99-com.rules does).' \
    'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' \
    'SUBSYSTEM=="spidev", KERNEL=="spidev*", GROUP="spi", MODE="0660"' > "$UDEV_RULE.tmp"
  mv "$UDEV_RULE.tmp" "$UDEV_RULE"
  if [ -z "$ROOT" ] && command -v udevadm >/dev/null 2>&1; then
    udevadm control --reload || true
    udevadm trigger --subsystem-match=gpio --subsystem-match=spidev || true
  fi
  say "installed $UDEV_RULE (/dev/gpiochip* for group gpio, /dev/spidev* for spi)"
fi

# The ALSA core at every boot: the unit's DeviceAllow=char-alsa is resolved from /proc/devices when the service
# starts, so a card whose driver loads the ALSA core only later (a USB interface switched on with the amplifier,
# on a Pi with the on-board audio off) would stay refused to the waiting service until it is restarted.
ALSA_CONF="$ROOT/etc/modules-load.d/murmur-alsa.conf"
if [ ! -f "$ALSA_CONF" ]; then
  mkdir -p "$(dirname "$ALSA_CONF")"
  printf '# Installed by Murmur install.sh: the ALSA core (major "alsa" in /proc/devices) before murmur.service starts.\nsnd\n' \
    > "$ALSA_CONF.tmp"
  mv "$ALSA_CONF.tmp" "$ALSA_CONF"
  say "installed $ALSA_CONF (the ALSA core at boot, for sound cards that appear later)"
fi

# ---------------------------------------------------------------------------------------------- venv
# One venv per requirements file, beside (never inside) the one the live release runs: a deploy with new packages
# that then fails leaves the old code on its old packages. pi_release.py builds it (the same code `make deploy` uses).
mkdir -p "$BASE/releases" "$BASE/bundles" "$BASE/venvs" "$BASE/.deploy" "$ROOT/etc/murmur" "$ROOT/etc/systemd/system"
python3 "$HERE/pi_release.py" venv --root "$ROOT" --requirements "$HERE/requirements-pi.txt" \
  || die "building the venv for $HERE/requirements-pi.txt failed (the reason is above); fix it and run this again"

# ---------------------------------------------------------------------------------------------- unit + config
# The unit comes with each release and is switched with it (pi_release.py); here only when none is installed, so
# re-running this from a new release never changes what the live release runs under.
UNIT="$ROOT/etc/systemd/system/murmur.service"
if [ -f "$UNIT" ]; then
  say "keeping the installed $UNIT (each release installs its own when it goes live)"
else
  cp "$HERE/murmur.service" "$UNIT.tmp" && chmod 644 "$UNIT.tmp" && mv "$UNIT.tmp" "$UNIT"
  say "installed $UNIT"
fi
GOVERNOR_UNIT="$ROOT/etc/systemd/system/murmur-cpu-performance.service"
cat > "$GOVERNOR_UNIT.tmp" <<'EOF'
# Installed by Murmur's install.sh: the performance CPU governor, so frame times do not depend on the
# ondemand governor ramping up (audio underruns on a Pi 4 at low load).
# Machines without CPU frequency scaling (virtual machines, some kernels) skip it instead of failing every boot.
[Unit]
Description=CPU governor performance for Murmur
Before=murmur.service
ConditionPathExistsGlob=/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for g in /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor; do echo performance > "$g"; done'
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
EOF
mv "$GOVERNOR_UNIT.tmp" "$GOVERNOR_UNIT"
# At boot, before the service: undo a deploy that a power cut cut short (runs only when one did).
RECOVER_UNIT="$ROOT/etc/systemd/system/murmur-recover.service"
cp "$HERE/murmur-recover.service" "$RECOVER_UNIT.tmp" && chmod 644 "$RECOVER_UNIT.tmp" && mv "$RECOVER_UNIT.tmp" "$RECOVER_UNIT"
systemctl daemon-reload
systemctl enable murmur.service murmur-cpu-performance.service murmur-recover.service
if [ -z "$ROOT" ]; then
  systemctl start murmur-cpu-performance.service || say "could not set the governor now (it is set at boot)"
fi

# journald: the system log is the only thing written all day. A size cap keeps it from filling the card; "volatile"
# writes nothing to the card at all, at the price of losing the log at every reboot (and with it why it rebooted).
JOURNAL_CONF="$ROOT/etc/systemd/journald.conf.d/murmur.conf"
if [ -z "$JOURNAL" ] && [ ! -f "$JOURNAL_CONF" ]; then
  JOURNAL=persistent
fi
if [ -n "$JOURNAL" ]; then
  mkdir -p "$(dirname "$JOURNAL_CONF")"
  if [ "$JOURNAL" = volatile ]; then
    printf '# Installed by Murmur install.sh --journal volatile: the log lives in RAM (/run/log/journal), nothing is
# written to the SD card, and the log is lost at every reboot.
[Journal]
Storage=volatile
RuntimeMaxUse=16M
' > "$JOURNAL_CONF.tmp"
  else
    printf '# Installed by Murmur install.sh --journal persistent: the log survives reboots, on the SD card, capped.
# SyncIntervalSec: journald writes ordinary lines to the card only every 5 min by default, so a power cut lost the
# last minutes (why it was cut among them); the service logs a few lines a day, so syncing within 10 s costs little.
[Journal]
Storage=persistent
SyncIntervalSec=10s
SystemMaxUse=32M
SystemKeepFree=512M
MaxRetentionSec=3month
' > "$JOURNAL_CONF.tmp"
  fi
  if cmp -s "$JOURNAL_CONF.tmp" "$JOURNAL_CONF"; then
    rm -f "$JOURNAL_CONF.tmp"
  else
    mv "$JOURNAL_CONF.tmp" "$JOURNAL_CONF"
    systemctl restart systemd-journald || say "could not restart journald now (its settings apply at the next boot)"
    say "journal: $JOURNAL ($JOURNAL_CONF)"
  fi
else
  say "keeping $JOURNAL_CONF"
fi

if [ -f "$CONFIG" ]; then
  say "keeping $CONFIG (yours)"
else
  cp "$HERE/murmur.toml" "$CONFIG.tmp" && chmod 644 "$CONFIG.tmp" && mv "$CONFIG.tmp" "$CONFIG"
  say "installed $CONFIG from the example; edit it, then: sudo systemctl reload murmur"
fi
sha256sum "$0" | cut -d' ' -f1 > "$BASE/.deploy/installed.sha256.tmp"
mv "$BASE/.deploy/installed.sha256.tmp" "$BASE/.deploy/installed.sha256"
sync
hints
say "done. Next: make deploy PI=<this host> from the laptop (copies code + bundle, starts the service)"
