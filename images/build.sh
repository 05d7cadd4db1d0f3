#!/usr/bin/env bash
# The licd appliance image: Debian 13 (trixie) minimal + nodejs + mosquitto + licd under /opt/licd
# with the systemd units, sysusers/tmpfiles, udev rule and mosquitto drop-in from systemd/.
# See images/README.md. Run as root on a Debian machine:
#
#   images/build.sh --dev                       # x86_64 test image (emulated dongle), for boot-test.sh
#   images/build.sh --arch arm64 --entitlement FILE --vendor-key HEX   # the appliance (see README)
#   images/build.sh --board rpi --entitlement FILE --vendor-key HEX    # a Raspberry Pi SD card
#
# Output in images/build/<name>/ (git-ignored): root.img (ext4, the root filesystem, root=/dev/vda
# under qemu), vmlinuz and initrd.img (Debian's kernel and initrd from the image, for qemu -kernel
# and -initrd), cmdline (the kernel command line), build.log (every command's output) and
# image.txt (what went in). No per-box secret: each box makes its own at its first boot.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: images/build.sh [options]

  --dev                    development mode: licd makes a development vendor key, an emulated
                           dongle and the demo entitlement on first boot (no USB dongle needed;
                           what the qemu boot test uses). Everything it signs is marked emulated.
  --entitlement FILE       the vendor's license file (required without --dev)
  --vendor-key HEX         the vendor's Ed25519 public key, 64 hex digits (required without --dev)
  --dongle hid|serial      the dongle's transport without --dev (default hid)
  --arch amd64|arm64       target architecture (default amd64; arm64 needs qemu-user-static)
  --board rpi              a Raspberry Pi SD-card image (arm64): sdcard.img with the boot firmware
                           (Debian's raspi-firmware) on a FAT partition, the root grown to the card
                           at first boot, consoles on the serial pins and on USB (gadget)
  --hostname NAME          the appliance's hostname (default licd)
  --mirror URL             Debian mirror (default http://deb.debian.org/debian)
  --name NAME              output directory under images/build/ (default <arch>[-dev])
  --reuse-root             keep the Debian system of the previous build of this name (rootfs/ is
                           left in images/build/NAME/) and redo licd and everything after it: for
                           iterating on licd, since an arm64 build installs its packages under
                           emulation (an hour on a loaded machine). Not for release images
EOF
}

ARCH=amd64
DEV=0
ENTITLEMENT=
VENDOR_KEY=
DONGLE=hid
HOST_NAME=licd
MIRROR=http://deb.debian.org/debian
NAME=
SUITE=trixie
BOARD=
REUSE=0

die_early() { echo "build.sh: $*" >&2; exit 64; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) DEV=1 ;;
    --entitlement) ENTITLEMENT=${2:?}; shift ;;
    --vendor-key) VENDOR_KEY=${2:?}; shift ;;
    --dongle) DONGLE=${2:?}; shift ;;
    --arch) ARCH=${2:?}; shift ;;
    --hostname) HOST_NAME=${2:?}; shift ;;
    --board) BOARD=${2:?}; shift ;;
    --admin-password-file) die_early "--admin-password-file is gone: every box makes its own admin password at its first boot (images/README.md, \"First boot\")" ;;
    --mirror) MIRROR=${2:?}; shift ;;
    --name) NAME=${2:?}; shift ;;
    --reuse-root) REUSE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown option $1" >&2; usage >&2; exit 64 ;;
  esac
  shift
done

die() { echo "build.sh: $*" >&2; exit 1; }

# --board rpi: the Raspberry Pi is arm64 (Debian's kernel runs the Pi 3, 4, Zero 2 W; see README).
case "$BOARD" in
  '') ;;
  rpi) ARCH=arm64 ;;
  *) die "--board must be rpi (or left out for a qemu/PC image)" ;;
esac

case "$ARCH" in
  amd64) KERNEL_PKG=linux-image-amd64 ;;
  arm64) KERNEL_PKG=linux-image-arm64 ;;
  *) die "--arch must be amd64 or arm64" ;;
esac
case "$DONGLE" in hid|serial) ;; *) die "--dongle must be hid or serial" ;; esac
if [ "$DEV" = 0 ]; then
  [ -n "$ENTITLEMENT" ] && [ -n "$VENDOR_KEY" ] \
    || die "an appliance image needs --entitlement FILE and --vendor-key HEX (or --dev for a development image)"
  [ -r "$ENTITLEMENT" ] || die "cannot read $ENTITLEMENT"
  [[ "$VENDOR_KEY" =~ ^[0-9a-fA-F]{64}$ ]] || die "--vendor-key must be 64 hex digits"
fi
[[ "$HOST_NAME" =~ ^[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})$ ]] || die "--hostname must be a plain host name"
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mounts need it)"

REPO=$(cd "$(dirname "$0")/.." && pwd)
[ -n "$NAME" ] || [ -z "$BOARD" ] || NAME=$BOARD$([ "$DEV" = 1 ] && echo -dev || true)
[ -n "$NAME" ] || NAME=$ARCH$([ "$DEV" = 1 ] && echo -dev || true)
[[ "$NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "--name must be a plain directory name"
BUILD=$REPO/images/build
OUT=$BUILD/$NAME
ROOT=$OUT/rootfs
CACHE=$BUILD/cache
LOG=$OUT/build.log
mkdir -p "$OUT" "$CACHE/debootstrap-$ARCH" "$CACHE/apt-$ARCH" "$CACHE/npm"
: >"$LOG"

T0=$(date +%s)
step() { printf '[%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" | tee -a "$LOG"; }
# Runs a command with its output in the build log; on failure shows the log's tail.
run() {
  if ! "$@" >>"$LOG" 2>&1; then
    echo "build.sh: failed: $*" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
}
in_root() { run chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# --- host tools ---------------------------------------------------------------------------------
need_pkgs=()
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need_pkgs+=(e2fsprogs)
command -v git >/dev/null || need_pkgs+=(git)
HOST_ARCH=$(dpkg --print-architecture)
case "$ARCH" in amd64) QEMU_ARCH=x86_64 ;; arm64) QEMU_ARCH=aarch64 ;; esac
if [ "$ARCH" != "$HOST_ARCH" ]; then
  [ -e "/usr/bin/qemu-$QEMU_ARCH-static" ] || [ -e "/usr/libexec/qemu-binfmt/$QEMU_ARCH-binfmt-P" ] || need_pkgs+=(qemu-user-static binfmt-support)
fi
# The SD card: sfdisk (fdisk), mkfs.vfat (dosfstools), mcopy (mtools).
if [ "$BOARD" = rpi ]; then
  command -v sfdisk >/dev/null || need_pkgs+=(fdisk)
  command -v mkfs.vfat >/dev/null || need_pkgs+=(dosfstools)
  command -v mcopy >/dev/null || need_pkgs+=(mtools)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  step "installing host tools: ${need_pkgs[*]}"
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
if [ "$ARCH" != "$HOST_ARCH" ]; then
  # debootstrap's second stage and npm run target binaries in the chroot through binfmt_misc.
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
    || die "binfmt_misc is not available: cannot run $ARCH binaries (see images/README.md)"
  command -v update-binfmts >/dev/null && update-binfmts --enable "qemu-$QEMU_ARCH" >>"$LOG" 2>&1 || true
  [ -e "/proc/sys/fs/binfmt_misc/qemu-$QEMU_ARCH" ] || die "no qemu-$QEMU_ARCH binfmt handler registered (install qemu-user-static)"
fi
# npm: the host's npm runs inside the chroot with the target's node (see "licd" below).
command -v npm >/dev/null || die "needs node and npm (11, as the project's CI uses) on the build machine"
# tsc: licd's TypeScript is compiled on this machine with the checkout's own compiler (a dev
# dependency); the image gets the JavaScript and no compiler.
TSC=$REPO/node_modules/typescript/bin/tsc
[ -f "$TSC" ] || die "needs the project's dev dependencies on the build machine to compile licd: run npm ci in $REPO first"
NPM_DIR=$(dirname "$(readlink -f "$(command -v npm)")")/..
NPM_DIR=$(cd "$NPM_DIR" && pwd)
[ -f "$NPM_DIR/bin/npm-cli.js" ] || die "cannot find npm's npm-cli.js (looked in $NPM_DIR/bin)"

# --- mounts, undone on any exit -----------------------------------------------------------------
MOUNTS=()
cleanup() {
  local i
  for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  MOUNTS=()
}
trap cleanup EXIT
mnt() { # mnt TARGET ARGS...: mount, and remember it for cleanup
  local target=$1; shift
  mkdir -p "$target"
  mount "$@" "$target"
  MOUNTS+=("$target")
}

# --- Raspberry Pi (--board rpi) -------------------------------------------------------------------
# Debian's raspi-firmware (component non-free-firmware) puts the Pi's boot firmware, the kernel, the
# initrd and the device trees in /boot/firmware, with config.txt and cmdline.txt made from
# /etc/default/raspi-firmware (and raspi-firmware-custom), again at every kernel update.
RPI_BOOT_LABEL=LICDBOOT
RPI_BOOT_MB=256
# The FAT boot partition on /boot/firmware. nofail: licd does not need it (only kernel updates
# do), so a slow or missing boot partition must not stop the boot in emergency mode; the first
# boot test of this image on a loaded machine did exactly that (the label's device timed out
# before udev had seen it, local-fs.target failed).
rpi_fstab() {
  sed -i '\|[[:space:]]/boot/firmware[[:space:]]|d' "$ROOT/etc/fstab"
  echo "LABEL=$RPI_BOOT_LABEL /boot/firmware vfat defaults,noatime,umask=0077,nofail,x-systemd.device-timeout=30s 0 2" >>"$ROOT/etc/fstab"
}
rpi_install() {
  step "Raspberry Pi: raspi-firmware, growpart, USB gadget"
  cat >"$ROOT/etc/apt/sources.list.d/debian-non-free-firmware.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rpi_fstab
  mkdir -p "$ROOT/boot/firmware"
  in_root apt-get update -qq
  # cloud-guest-utils: growpart (the root grown to the card); dosfstools: fsck of the FAT partition.
  in_root apt-get install -y -qq --no-install-recommends raspi-firmware cloud-guest-utils dosfstools
  # The root by its label; the console on the serial pins and on a screen (tty1). With Debian's
  # kernel the Pi 3, 4 and Zero 2 W show the pins' UART (the mini UART) as ttyS1 (the comment in
  # /etc/default/raspi-firmware says so), not as the ttyS0 that Raspberry Pi OS's "serial0" names.
  # GPU_FREQ=360: the mini UART is clocked by the Pi 4's GPU; other GPU frequencies garble it.
  local d=$ROOT/etc/default/raspi-firmware
  [ -f "$d" ] || die "raspi-firmware installed no $d"
  if grep -q '^#\?ROOTPART=' "$d"; then sed -i 's|^#\?ROOTPART=.*|ROOTPART=LABEL=licd-root|' "$d"; else echo 'ROOTPART=LABEL=licd-root' >>"$d"; fi
  if grep -q '^#\?CONSOLES=' "$d"; then sed -i 's|^#\?CONSOLES=.*|CONSOLES="tty0 ttyS1,115200"|' "$d"; else echo 'CONSOLES="tty0 ttyS1,115200"' >>"$d"; fi
  # CMA=0: a headless box needs no contiguous memory for video, and the package's default cma=64M
  # (added when the build machine is not a Pi 4) can keep a Pi 4 from booting.
  if grep -q '^#\?CMA=' "$d"; then sed -i 's|^#\?CMA=.*|CMA=0|' "$d"; else echo 'CMA=0' >>"$d"; fi
  if grep -q '^#\?GPU_FREQ=' "$d"; then sed -i 's|^#\?GPU_FREQ=.*|GPU_FREQ=360|' "$d"; else echo 'GPU_FREQ=360' >>"$d"; fi
  # The UART on the pins (GPIO 14/15); the USB port with device mode as a device: the Pi 4's USB-C
  # port (the dongle goes in a USB-A port, on another controller), the Zero 2 W's only data port
  # in OTG mode (an OTG adapter makes it a host for the dongle). Not on the Pi 3, whose USB ports
  # and Ethernet hang off the same controller.
  cat >"$ROOT/etc/default/raspi-firmware-custom" <<'EOF'
# licd (images/build.sh --board rpi)
enable_uart=1
[pi4]
dtoverlay=dwc2,dr_mode=peripheral
[pi02]
dtoverlay=dwc2,dr_mode=otg
[all]
EOF
  local S=$REPO/systemd/rpi
  install -m 0644 "$S/licd-growroot.service" "$S/licd-usb-gadget.service" "$ROOT/etc/systemd/system/"
  install -m 0644 "$S/licd-gadget-modules.conf" "$ROOT/etc/modules-load.d/licd-gadget.conf"
  in_root systemctl enable licd-growroot.service licd-usb-gadget.service
  # The boot files for the kernel already installed (the package's hooks do it on updates).
  local kver
  kver=$(ls "$ROOT/lib/modules" | sort -V | tail -n 1)
  # (The hook does nothing unless DEB_MAINT_PARAMS says configure, as the kernel package's does.)
  in_root env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware "$kver"
  rpi_check_boot_files
}
rpi_check_boot_files() {
  local b=$ROOT/boot/firmware f
  for f in config.txt cmdline.txt bootcode.bin start4.elf fixup4.dat bcm2711-rpi-4-b.dtb bcm2837-rpi-3-b.dtb; do
    [ -e "$b/$f" ] || die "raspi-firmware left no /boot/firmware/$f (see $LOG; it has: $(ls "$b" | tr '\n' ' '))"
  done
  ls "$b" | grep -q '^vmlinuz' || die "no kernel in /boot/firmware"
  ls "$b" | grep -q '^initrd' || die "no initrd in /boot/firmware"
  grep -q 'root=LABEL=licd-root' "$b/cmdline.txt" || die "cmdline.txt does not name root=LABEL=licd-root: $(cat "$b/cmdline.txt")"
  grep -q 'console=ttyS1,115200' "$b/cmdline.txt" || die "cmdline.txt has no serial console: $(cat "$b/cmdline.txt")"
  grep -q '^enable_uart=1' "$b/config.txt" || die "config.txt does not enable the UART"
  step "Raspberry Pi boot files: cmdline.txt: $(tr '\n' ' ' <"$b/cmdline.txt")"
}
rpi_stage_firmware() {
  # (--reuse-root of a finished build: the boot files were staged then and are kept.)
  [ -n "$(ls -A "$ROOT/boot/firmware")" ] || { [ -f "$OUT/firmware/config.txt" ] && return 0; }
  rm -rf "$OUT/firmware"
  mv "$ROOT/boot/firmware" "$OUT/firmware"
  mkdir "$ROOT/boot/firmware"
}
rpi_sdcard() {
  # MBR: the Pi's boot ROM and firmware read the first FAT partition of an MBR disk. No loop
  # device: each file system is made in its own file and copied into the card image.
  step "sdcard.img: MBR, FAT $RPI_BOOT_LABEL (${RPI_BOOT_MB} MiB) + root.img"
  local boot=$OUT/boot.vfat root_mb start=8192 boot_sectors root_sectors
  rm -f "$boot" "$OUT/sdcard.img"
  run mkfs.vfat -F 32 -n "$RPI_BOOT_LABEL" -C "$boot" $(( RPI_BOOT_MB * 1024 ))
  run mcopy -s -p -i "$boot" "$OUT/firmware"/* ::/
  root_mb=$(( $(stat -c %s "$OUT/root.img") / 1048576 ))
  boot_sectors=$(( RPI_BOOT_MB * 2048 ))
  root_sectors=$(( root_mb * 2048 ))
  truncate -s $(( (start + boot_sectors + root_sectors) * 512 )) "$OUT/sdcard.img"
  printf 'label: dos\nstart=%d, size=%d, type=c, bootable\nstart=%d, size=%d, type=83\n' \
    "$start" "$boot_sectors" $(( start + boot_sectors )) "$root_sectors" | run sfdisk -q "$OUT/sdcard.img"
  run dd if="$boot" of="$OUT/sdcard.img" bs=1M seek=$(( start / 2048 )) conv=notrunc,sparse status=none
  run dd if="$OUT/root.img" of="$OUT/sdcard.img" bs=1M seek=$(( (start + boot_sectors) / 2048 )) conv=notrunc,sparse status=none
  rm -f "$boot"
  echo "board: Raspberry Pi (sdcard.img: $(( (start + boot_sectors + root_sectors) / 2048 )) MiB; the root grows to the card at first boot)" >>"$OUT/image.txt"
}

# --- base system --------------------------------------------------------------------------------
if [ "$REUSE" = 1 ]; then
  [ -f "$ROOT/opt/licd/REVISION" ] && [ -x "$ROOT/usr/bin/node" ] || die "--reuse-root: no earlier build's root in $ROOT (its licd step was never reached); build without --reuse-root"
  step "--reuse-root: the Debian system of the previous build in $ROOT; licd and what follows are redone"
  mnt "$ROOT/proc" -t proc proc
  mnt "$ROOT/sys" -t sysfs sysfs
  mnt "$ROOT/dev" --bind /dev
  mnt "$ROOT/dev/pts" --bind /dev/pts
  mnt "$ROOT/var/cache/apt/archives" --bind "$CACHE/apt-$ARCH"
  rm -f "$ROOT/etc/resolv.conf"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  rm -rf "$ROOT/opt/licd"
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
  # The box's own files again (they may have changed with licd).
  run "$REPO/images/box-files.sh" "$ROOT"
  if [ "$BOARD" = rpi ]; then rpi_fstab; fi
elif [ -d "$ROOT" ]; then
  step "removing the previous root filesystem"
  # A previous run killed mid-way may have left mounts behind.
  for m in $(awk -v r="$ROOT" '$2 ~ "^"r {print $2}' /proc/mounts | sort -r); do umount -l "$m" || true; done
  rm -rf --one-file-system "$ROOT"
fi
if [ "$REUSE" = 0 ]; then
step "debootstrap $SUITE $ARCH (minbase) from $MIRROR"
run debootstrap --arch="$ARCH" --variant=minbase --cache-dir="$CACHE/debootstrap-$ARCH" \
  --include=ca-certificates "$SUITE" "$ROOT" "$MIRROR"

mnt "$ROOT/proc" -t proc proc
mnt "$ROOT/sys" -t sysfs sysfs
mnt "$ROOT/dev" --bind /dev
mnt "$ROOT/dev/pts" --bind /dev/pts
mnt "$ROOT/var/cache/apt/archives" --bind "$CACHE/apt-$ARCH"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
rm -f "$ROOT/etc/apt/sources.list"
# The root filesystem is the whole disk under qemu (/dev/vda); on the Pi it would be the SD card's
# second partition: found by its label either way. Written before the kernel is installed, so that
# the initrd gets fsck for it.
echo 'LABEL=licd-root / ext4 defaults,noatime,errors=remount-ro 0 1' >"$ROOT/etc/fstab"
# The box's own files from systemd/ (first boot, network, journal, watchdog, modules, mosquitto's
# sandbox, the initrd's FSTYPE): before the kernel package makes the initrd.
run "$REPO/images/box-files.sh" "$ROOT"
# No service starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
# The appliance keeps no documentation or translations (dpkg skips them from now on).
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/01-licd-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF

# systemd-sysv: systemd as init; udev: the dongle's device nodes; dbus: logind (power button),
# hostnamectl, timedatectl; systemd-timesyncd: the clock (a Pi has no RTC, and licd watches for
# the clock stepping back); kmod: modules-load.d (cdc_acm); iproute2: `ip` for the admin;
# libusb-1.0-0: node-hid loads it even for its hidraw backend (the HID dongle); e2fsprogs: fsck
# of the root filesystem at boot (not in Debian 13's minbase); openssl: licd-tls-setup makes the
# broker's TLS key and certificate at first boot.
PKGS=(systemd-sysv udev dbus systemd-timesyncd kmod iproute2 e2fsprogs libusb-1.0-0 nodejs mosquitto openssl "$KERNEL_PKG" initramfs-tools zstd)
step "apt-get install ${PKGS[*]}"
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends "${PKGS[@]}"
# systemd-networkd is part of the systemd package up to Debian 13; later releases split it out.
if [ ! -e "$ROOT/usr/lib/systemd/systemd-networkd" ]; then in_root apt-get install -y -qq --no-install-recommends systemd-networkd; fi

# --- the box: DNS from DHCP, mosquitto logging to the journal --------------------------------------
# systemd-resolved takes the DNS servers from systemd-networkd (DHCP); its package points
# /etc/resolv.conf at its stub resolver, which does not run in the chroot: the build keeps the
# host's resolv.conf until "clean up", which puts the link back.
step "the box: systemd-resolved; mosquitto logs to the journal"
in_root apt-get install -y -qq --no-install-recommends systemd-resolved
rm -f "$ROOT/etc/resolv.conf"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# log_dest lines add up and a conf.d file cannot remove one: Debian's file destination goes here
# (conf.d/licd.conf says log_dest syslog; the sandbox gives mosquitto no writable /var/log).
sed -i 's|^log_dest file |# licd: to the journal instead (conf.d/licd.conf). log_dest file |' "$ROOT/etc/mosquitto/mosquitto.conf"
if grep -q '^log_dest file' "$ROOT/etc/mosquitto/mosquitto.conf"; then die "mosquitto.conf still logs to a file"; fi

# --- Raspberry Pi: boot firmware, growing the root, serial and USB consoles ----------------------
if [ "$BOARD" = rpi ]; then rpi_install; fi
fi # end of: not --reuse-root

NODE_VERSION=$(chroot "$ROOT" /usr/bin/node --version)
step "target node $NODE_VERSION"
node_ok=$(chroot "$ROOT" /usr/bin/node -e 'const [a,b]=process.versions.node.split(".").map(Number); console.log(a>20||(a===20&&b>=19)?"yes":"no")')
[ "$node_ok" = yes ] || die "the target's node $NODE_VERSION is older than package.json's engines (>=20.19)"

# --- licd -----------------------------------------------------------------------------------------
step "licd: git ls-files -> /opt/licd"
GIT_REV=$(git -C "$REPO" rev-parse HEAD)
GIT_DIRTY=$(git -C "$REPO" status --porcelain --untracked-files=no | wc -l)
if [ "$GIT_DIRTY" != 0 ]; then step "note: $GIT_DIRTY tracked file(s) differ from $GIT_REV; the image gets the working tree's content"; fi
mkdir -p "$ROOT/opt/licd"
# Tracked files only (no node_modules, data/ or images/build/); a tracked file deleted in the
# working tree is skipped.
(cd "$REPO" && git ls-files -z | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf -) | tar -C "$ROOT/opt/licd" --no-same-owner -xf -
chown -R root:root "$ROOT/opt/licd"
chmod -R u+rwX,go+rX,go-w "$ROOT/opt/licd"
printf '%s%s\n' "$GIT_REV" "$([ "$GIT_DIRTY" != 0 ] && echo ' (with uncommitted changes)' || true)" >"$ROOT/opt/licd/REVISION"

# The production form (npm run build): tsc compiles the copied sources (src/, firmware-bridge/)
# into /opt/licd/dist with this machine's node and the checkout's compiler and type packages
# (node_modules linked in for the compile only). JavaScript is the same for every architecture.
step "tsc: licd's sources -> /opt/licd/dist"
ln -s "$REPO/node_modules" "$ROOT/opt/licd/node_modules"
if ! node "$TSC" -p "$ROOT/opt/licd/tsconfig.build.json" >>"$LOG" 2>&1; then
  rm -f "$ROOT/opt/licd/node_modules"
  tail -n 30 "$LOG" >&2
  die "tsc failed (see above; npm run build in the checkout shows the same)"
fi
rm "$ROOT/opt/licd/node_modules"
[ -f "$ROOT/opt/licd/dist/src/main.js" ] && [ -f "$ROOT/opt/licd/dist/src/cli/licctl-main.js" ] || die "tsc made no dist/src/main.js or dist/src/cli/licctl-main.js"
chmod -R u+rwX,go+rX,go-w "$ROOT/opt/licd/dist"

# npm ci runs inside the chroot, with the target's node, so that native modules (classic-level,
# serialport, node-hid) are the target's. --omit=dev: no compiler, no tsx or esbuild. The npm is the host's
# (bind-mounted, not installed in the image): package.json's allowScripts is read by npm 11; Debian
# 13's own npm is 9.2, and installing it would add some 370 packages to the image.
step "npm ci --omit=dev in the chroot (npm $(node "$NPM_DIR/bin/npm-cli.js" --version 2>/dev/null), node $NODE_VERSION)"
mnt "$ROOT/tmp/npm" --bind "$NPM_DIR"
mount -o remount,bind,ro "$ROOT/tmp/npm"
mnt "$ROOT/tmp/npm-cache" --bind "$CACHE/npm"
# The host's CA bundle goes along: where the registry is reached through a TLS proxy, its CA is
# in the host's bundle (npm's cafile, NODE_EXTRA_CA_CERTS), not in the target's.
HOST_CA=$(npm config get cafile 2>/dev/null || true)
case "$HOST_CA" in ''|null|undefined) HOST_CA=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt} ;; esac
[ -r "$HOST_CA" ] || die "cannot read the host's CA bundle $HOST_CA"
cp "$HOST_CA" "$ROOT/tmp/host-ca.crt"
in_root sh -c 'cd /opt/licd && NODE_EXTRA_CA_CERTS=/tmp/host-ca.crt node /tmp/npm/bin/npm-cli.js ci --omit=dev \
  --cafile /tmp/host-ca.crt --no-audit --no-fund --no-update-notifier --cache /tmp/npm-cache'
rm -f "$ROOT/tmp/host-ca.crt"
# Load the native modules once with the target's node: a missing or wrong-platform binary fails here.
in_root sh -c 'cd /opt/licd && node -e "
  require(\"classic-level\");
  require(\"node-gyp-build\")(require(\"path\").dirname(require.resolve(\"@serialport/bindings-cpp/package.json\")));
  require(\"node-hid\").devices();
  console.log(\"native modules load: classic-level, serialport, node-hid\")"'
# No development tool in the image: the daemon and licctl run the compiled JavaScript.
for dev in tsx esbuild typescript; do
  [ ! -e "$ROOT/opt/licd/node_modules/$dev" ] || die "npm ci --omit=dev installed $dev: it must be a devDependency in package.json"
done
umount "$ROOT/tmp/npm-cache" "$ROOT/tmp/npm"
MOUNTS=("${MOUNTS[@]:0:${#MOUNTS[@]}-2}")
rmdir "$ROOT/tmp/npm" "$ROOT/tmp/npm-cache"
chown -R root:root "$ROOT/opt/licd"

# --- systemd/ files (as systemd/README.md installs them) ----------------------------------------
step "systemd units, sysusers, tmpfiles, udev rule, mosquitto drop-in and ACL"
S=$REPO/systemd
install -m 0644 "$S/licd.sysusers.conf" "$ROOT/usr/lib/sysusers.d/licd.conf"
install -m 0644 "$S/licd.tmpfiles.conf" "$ROOT/usr/lib/tmpfiles.d/licd.conf"
install -m 0644 "$S/licd-modules.conf" "$ROOT/etc/modules-load.d/licd.conf"
install -D -m 0644 "$S/udev/99-licd-dongle.rules" "$ROOT/etc/udev/rules.d/99-licd-dongle.rules"
install -m 0644 "$S/mosquitto/licd.conf" "$ROOT/etc/mosquitto/conf.d/licd.conf"
install -m 0644 "$S/mosquitto/licd.acl" "$ROOT/etc/mosquitto/licd.acl"
install -m 0644 "$S/licd.service" "$ROOT/etc/systemd/system/licd.service"
# The maintenance console (docs/console.md): one instance per serial line, started where the line is.
install -m 0644 "$S/licd-console@.service" "$ROOT/etc/systemd/system/licd-console@.service"
# The broker's TLS key and certificate are made at each box's first boot, never here: every box
# has its own key, and an image carries none.
install -m 0644 "$S/licd-tls-setup.service" "$ROOT/etc/systemd/system/licd-tls-setup.service"
rm -rf "$ROOT/etc/licd/tls"
in_root systemd-sysusers
in_root getent passwd licd
in_root getent group mosquitto

# The compiled daemon and licctl load with the target's node and the installed node_modules, as
# user licd: `--help` loads each one's whole static module graph, then prints its usage and exits.
step "compiled licd and licctl load"
in_root runuser -u licd -- node /opt/licd/dist/src/main.js --help
in_root runuser -u licd -- node /opt/licd/dist/src/cli/licctl-main.js --help
# licctl for the admin on the box's console: the compiled licctl.
install -d "$ROOT/usr/local/bin"
printf '#!/bin/sh\nexec /usr/bin/node /opt/licd/dist/src/cli/licctl-main.js "$@"\n' >"$ROOT/usr/local/bin/licctl"
chmod 0755 "$ROOT/usr/local/bin/licctl"

# --- /etc/licd ----------------------------------------------------------------------------------
install -d -m 0755 "$ROOT/etc/licd"
if [ "$DEV" = 1 ]; then
  step "config: development mode, emulated dongle, external mosquitto"
  cat >"$ROOT/etc/licd/licd.json" <<'EOF'
{
  "dataDir": "/var/lib/licd",
  "development": true,
  "mqtt": {
    "broker": "external",
    "url": "mqtt://127.0.0.1:1883",
    "username": "licd",
    "passwordFile": "/etc/licd/mqtt.password",
    "brokerCertFile": "/etc/licd/tls/cert.pem"
  },
  "dongle": { "transport": "emulated" },
  "log": { "level": "info", "format": "text" }
}
EOF
else
  step "config: vendor license, $DONGLE dongle, external mosquitto"
  install -m 0644 "$ENTITLEMENT" "$ROOT/etc/licd/entitlement.json"
  # licd.json.example with the vendor key filled in and the chosen dongle transport.
  node -e '
    const fs = require("fs");
    const [src, dst, key, dongle] = process.argv.slice(1);
    const c = JSON.parse(fs.readFileSync(src, "utf8"));
    c.vendorPublicKey = key.toLowerCase();
    if (dongle === "serial") c.dongle = { transport: "serial", path: "/dev/licd-dongle-tty" };
    fs.writeFileSync(dst, JSON.stringify(c, null, 2) + "\n");
  ' "$S/licd.json.example" "$ROOT/etc/licd/licd.json" "$VENDOR_KEY" "$DONGLE"
  # The serial transport needs cdc_acm loaded at boot; the HID one does not use it.
  [ "$DONGLE" = serial ] || rm -f "$ROOT/etc/modules-load.d/licd.conf"
fi
chmod 0644 "$ROOT/etc/licd/licd.json"

# --- per-box secrets: none in the image ------------------------------------------------------------
# The admin and licd broker passwords, mosquitto's password files and the TLS key are made at each
# box's first boot by licd-firstboot.service (systemd/licd-firstboot), so that no two boxes
# flashed from this image share one.
step "no per-box secret in the image (licd-firstboot.service makes them at first boot)"
for f in /etc/licd/admin.password /etc/licd/mqtt.password /etc/mosquitto/licd.passwd /etc/mosquitto/licd-plain.passwd \
         /etc/licd/tls/key.pem /etc/licd/label.txt /etc/issue.d/licd.issue /etc/licd/firstboot.done; do
  [ ! -e "$ROOT$f" ] || die "the image must not carry $f (licd-firstboot makes it per box)"
done
# Owners and modes from licd.tmpfiles.conf (applied again at every boot).
in_root systemd-tmpfiles --create /usr/lib/tmpfiles.d/licd.conf
# tmpfiles.d leaves unlisted files alone: the emulated-dongle image has no entitlement.json.
[ ! -e "$ROOT/etc/licd/tls/key.pem" ] || die "the image must not carry a TLS key (licd-tls-setup makes one per box)"

# --- the rest of the system ------------------------------------------------------------------------
step "hostname, fstab, network, services"
echo "$HOST_NAME" >"$ROOT/etc/hostname"
cat >"$ROOT/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$HOST_NAME
::1		localhost ip6-localhost ip6-loopback
EOF
# The LAN port (DHCP, with DNS and NTP from it): systemd/network/50-wired.network, installed by
# box-files.sh.
ln -sf /usr/share/zoneinfo/Etc/UTC "$ROOT/etc/localtime"
echo Etc/UTC >"$ROOT/etc/timezone"
# An empty machine-id: each appliance makes its own on first boot. systemd-firstboot would ask on
# the console for a locale and time zone then and hold up the boot: it has nothing to ask.
: >"$ROOT/etc/machine-id"
ln -sf /dev/null "$ROOT/etc/systemd/system/systemd-firstboot.service"
in_root systemctl enable systemd-networkd.service systemd-resolved.service systemd-timesyncd.service licd-firstboot.service mosquitto.service licd.service
# mosquitto's unit waits for network-online.target (a dependency a drop-in cannot remove): without
# systemd-networkd-wait-online nothing holds that target up, so a box without its cable starts
# mosquitto and licd at once instead of after wait-online's 2-minute timeout. mosquitto listens on
# the wildcard address, so the LAN address is served as soon as DHCP gives it.
ln -sf /dev/null "$ROOT/etc/systemd/system/systemd-networkd-wait-online.service"
if [ "$DEV" = 1 ]; then
  # The development image shows the journal on the serial console, so a failed boot test shows why.
  install -d "$ROOT/etc/systemd/journald.conf.d"
  printf '[Journal]\nForwardToConsole=yes\nMaxLevelConsole=info\n' >"$ROOT/etc/systemd/journald.conf.d/10-licd-dev-console.conf"
fi

# --- kernel and initrd ------------------------------------------------------------------------------
step "kernel and initrd"
KVER=$(ls "$ROOT/lib/modules" | sort -V | tail -n 1)
[ -n "$KVER" ] || die "no kernel modules in the image"
[ -f "$ROOT/boot/initrd.img-$KVER" ] || in_root update-initramfs -c -k "$KVER"
cp "$ROOT/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
cp "$ROOT/boot/initrd.img-$KVER" "$OUT/initrd.img"
# fsck of the root in the initrd (initramfs-tools/conf.d/licd-fstype: FSTYPE=ext4).
chroot "$ROOT" lsinitramfs "/boot/initrd.img-$KVER" | grep -q 'sbin/fsck\.ext4$' \
  || die "the initrd has no fsck.ext4 (FSTYPE=ext4 in /etc/initramfs-tools/conf.d/licd-fstype)"
if [ "$ARCH" = amd64 ]; then
  echo "root=LABEL=licd-root ro console=ttyS0 panic=-1" >"$OUT/cmdline"
else
  echo "root=LABEL=licd-root ro console=ttyAMA0 panic=-1" >"$OUT/cmdline"
fi

# --- clean up and make the disk image --------------------------------------------------------------
step "clean up"
in_root apt-get clean
rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/resolv.conf"
# DNS through systemd-resolved (see "the box" above).
ln -s ../run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"
rm -rf "$ROOT/var/lib/apt/lists/"* "$ROOT/tmp/"* "$ROOT/root/.npm" "$ROOT/var/log/"*.log
cleanup
{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "debian: $SUITE $ARCH, kernel $KVER"
  echo "node: $NODE_VERSION, mosquitto: $(chroot "$ROOT" dpkg-query -W -f '${Version}' mosquitto)"
  echo "licd: $(cat "$ROOT/opt/licd/REVISION")"
  echo "mode: $([ "$DEV" = 1 ] && echo 'development (emulated dongle, demo entitlement)' || echo "appliance ($DONGLE dongle)")"
  echo "hostname: $HOST_NAME"
} >"$OUT/image.txt"

# The Pi's boot files go to the FAT partition (mounted on /boot/firmware), not into root.img.
if [ "$BOARD" = rpi ]; then rpi_stage_firmware; fi
USED_MB=$(du -sm "$ROOT" | cut -f1)
SIZE_MB=$(( USED_MB * 5 / 4 + 512 ))
step "mkfs.ext4 root.img (${SIZE_MB} MiB for ${USED_MB} MiB of files)"
rm -f "$OUT/root.img"
run mkfs.ext4 -q -F -L licd-root -d "$ROOT" "$OUT/root.img" "${SIZE_MB}M"

if [ "$BOARD" = rpi ]; then rpi_sdcard; fi

step "done in $(( $(date +%s) - T0 )) s: $OUT/{root.img,vmlinuz,initrd.img,cmdline}$([ "$BOARD" = rpi ] && echo ' and sdcard.img' || true)"
cat "$OUT/image.txt"
