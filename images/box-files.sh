#!/usr/bin/env bash
# images/box-files.sh ROOT: installs the files that make the image a box rather than a server
# (first boot, network, journal, watchdog, modules, mosquitto's sandbox, the initrd's fsck) from
# systemd/ into the root file system ROOT, where systemd/README.md says they go. Called by
# build.sh before the packages are installed (the initramfs setting must be there when the kernel
# package makes the initrd); test/systemd/box.test.ts runs it against a temporary root.
set -euo pipefail
ROOT=${1:?usage: images/box-files.sh ROOT}
[ -d "$ROOT" ] || { echo "box-files.sh: $ROOT is not a directory" >&2; exit 1; }
S=$(cd "$(dirname "$0")/../systemd" && pwd)

# First boot: every per-box secret (the script itself stays in /opt/licd/systemd/).
install -D -m 0644 "$S/licd-firstboot.service" "$ROOT/etc/systemd/system/licd-firstboot.service"
# DHCP with DNS (systemd-resolved) and NTP (systemd-timesyncd) from the DHCP server.
install -D -m 0644 "$S/network/50-wired.network" "$ROOT/etc/systemd/network/50-wired.network"
# A persistent, size-capped journal (mosquitto logs to it too).
install -D -m 0644 "$S/journald/licd.conf" "$ROOT/etc/systemd/journald.conf.d/10-licd.conf"
# The hardware watchdog, pinged by systemd.
install -D -m 0644 "$S/licd-watchdog.conf" "$ROOT/etc/systemd/system.conf.d/10-licd-watchdog.conf"
# The HID core at boot, so licd's DeviceAllow=char-hidraw resolves before a dongle is plugged in.
install -D -m 0644 "$S/licd-modules-hid.conf" "$ROOT/etc/modules-load.d/licd-hid.conf"
# mosquitto sandboxed (a drop-in for Debian's mosquitto.service).
install -D -m 0644 "$S/mosquitto/licd-sandbox.conf" "$ROOT/etc/systemd/system/mosquitto.service.d/licd-sandbox.conf"
# fsck of the ext4 root in the initrd.
install -D -m 0644 "$S/initramfs/licd-fstype" "$ROOT/etc/initramfs-tools/conf.d/licd-fstype"
