# licd boot-test agent: runs INSIDE the VM that images/boot-test.sh boots, never on an appliance.
# boot-test.sh hands this file to the guest as a raw virtio disk (serial "licd-agent") and starts it
# from the kernel command line it passes to qemu (systemd.run=, with systemd.unit=multi-user.target
# so the box boots as it always does). The image itself carries nothing of it.
#
# It reads one command per line from the virtio port "licd-agent" and answers there with lines
# "AGENT <cmd> <result...>", ending each command with "AGENT <cmd> END". Commands:
#   security      systemd-analyze security of licd.service and mosquitto.service
#   root          the root file system's size and the card's (growroot at first boot)
#   hid-prepare   licd restarted on a HID dongle that is not plugged in yet
#   hid-plug      a USB HID dongle (dummy_hcd + configfs f_hid, the emulator behind /dev/hidg0)
#                 plugged in; waits until licd uses it, says whether licd restarted meanwhile
#   console       bridges the USB gadget serial port's host side (/dev/ttyACM0: the box's
#                 licd-console@ttyGS0 on the dummy_hcd gadget) to the virtio port "licd-console"
#   vendor-key    the development vendor key licd made at first boot (base64), so the host can act
#                 as the vendor for this --dev image's emulated dongle
#   quit          stops the agent
# (sh reads this file from a block device; `exit` at the end keeps it from reading the padding.)
PORT=/dev/virtio-ports/licd-agent
for _ in $(seq 120); do [ -e "$PORT" ] && break; sleep 1; done
exec 3<>"$PORT"
say() { echo "AGENT $*" >&3; echo "AGENT $*" >/dev/console; }
HID_STATE=/var/lib/licd-hid-dongle.json
G=/sys/kernel/config/usb_gadget/licd-hid-dongle

licd_pid() { systemctl show -p MainPID --value licd.service; }
licd_restarts() { systemctl show -p NRestarts --value licd.service; }

cmd_security() {
  # (dash has no local variables: nothing here may be called "line", the command being run.)
  for u in licd.service mosquitto.service; do
    rating=$(systemd-analyze security "$u" 2>&1 | grep 'Overall exposure level' | tail -n 1)
    say security "$u" "$(echo "$rating" | sed -n 's/.*: *\([0-9.]*\) \([A-Z]*\).*/\1 \2/p')"
  done
}

cmd_root() {
  dev=$(findmnt -n -o SOURCE /)
  disk=/dev/$(lsblk -n -o PKNAME "$dev" | head -n 1)
  say root "fs $(df -B1M --output=size / | tail -n 1 | tr -d ' ') MiB part $(( $(blockdev --getsize64 "$dev") / 1048576 )) MiB disk $(( $(blockdev --getsize64 "$disk") / 1048576 )) MiB growroot $(systemctl show -p Result --value licd-growroot.service 2>/dev/null || echo none)"
}

cmd_hid_prepare() {
  # licd on a HID dongle (the emulated one's identity, so its license still fits), started while
  # no such dongle is plugged in.
  systemctl stop licd.service
  cp /var/lib/licd/dev/dongle.json "$HID_STATE"
  node -e '
    const fs = require("fs");
    const key = JSON.parse(fs.readFileSync("/var/lib/licd/dev/vendor.key", "utf8"));
    const c = JSON.parse(fs.readFileSync("/etc/licd/licd.json", "utf8"));
    delete c.development;
    c.vendorPublicKey = key.publicKey;
    c.entitlementFile = "/var/lib/licd/dev/entitlement.json";
    c.dongle = { transport: "hid", vendorId: 0x1209, productId: 0x0001 };
    fs.writeFileSync("/etc/licd/licd.json", JSON.stringify(c, null, 2) + "\n");
  '
  systemctl start licd.service
  for _ in $(seq 120); do
    /usr/local/bin/licctl status --json >/run/agent-status.json 2>/dev/null && break
    sleep 1
  done
  say hid-prepare "licd pid $(licd_pid) restarts $(licd_restarts) dongle $(node -e 'const s=require("/run/agent-status.json"); console.log(s.server.dongle.present ? "present" : "absent")' 2>&1)"
  ls /dev/hidraw* >/dev/null 2>&1 && say hid-prepare "hidraw nodes before the dongle: $(ls /dev/hidraw*)"
}

cmd_hid_plug() {
  pid=$(licd_pid)
  restarts=$(licd_restarts)
  modprobe libcomposite && modprobe usb_f_hid || { say hid-plug "FAIL no gadget modules"; return; }
  mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
  udc=$(ls /sys/class/udc | grep -v "^$(cat /sys/kernel/config/usb_gadget/licd/UDC 2>/dev/null)\$" | head -n 1)
  [ -n "$udc" ] || { say hid-plug "FAIL no free USB device controller ($(ls /sys/class/udc | tr '\n' ' '))"; return; }
  mkdir -p "$G/strings/0x409" "$G/configs/c.1/strings/0x409" "$G/functions/hid.dongle"
  echo 0x1209 >"$G/idVendor"; echo 0x0001 >"$G/idProduct"; echo 0x0200 >"$G/bcdUSB"
  echo licd >"$G/strings/0x409/manufacturer"; echo "licd dongle" >"$G/strings/0x409/product"
  echo HIDTEST01 >"$G/strings/0x409/serialnumber"
  echo "dongle" >"$G/configs/c.1/strings/0x409/configuration"
  echo 0 >"$G/functions/hid.dongle/protocol"; echo 0 >"$G/functions/hid.dongle/subclass"
  echo 64 >"$G/functions/hid.dongle/report_length"
  # Vendor page 0xFF00: 64-byte input and output reports, no report id (firmware-bridge/PROTOCOL.md).
  node -e 'require("fs").writeFileSync(process.argv[1], Buffer.from([0x06,0x00,0xff, 0x09,0x01, 0xa1,0x01, 0x15,0x00, 0x26,0xff,0x00, 0x75,0x08, 0x95,0x40, 0x09,0x01, 0x81,0x02, 0x95,0x40, 0x09,0x01, 0x91,0x02, 0xc0]))' \
    "$G/functions/hid.dongle/report_desc"
  ln -s "$G/functions/hid.dongle" "$G/configs/c.1/"
  echo "$udc" >"$G/UDC"
  for _ in $(seq 30); do [ -e /dev/hidg0 ] && break; sleep 0.5; done
  [ -e /dev/hidg0 ] || { say hid-plug "FAIL no /dev/hidg0"; return; }
  systemd-run --unit=licd-agent-hid-dongle --quiet /usr/bin/node /opt/licd/dist/src/cli/licctl-main.js dongle emulate --hidg /dev/hidg0 --state "$HID_STATE"
  t0=$(date +%s)
  present=no
  for _ in $(seq 90); do
    if /usr/local/bin/licctl status --json >/run/agent-status.json 2>/dev/null \
      && node -e 'process.exit(require("/run/agent-status.json").server.dongle.present ? 0 : 1)'; then present=yes; break; fi
    sleep 1
  done
  say hid-plug "udc $udc hidraw $(ls /dev/hidraw* 2>/dev/null | tr '\n' ' ')"
  say hid-plug "present $present after $(( $(date +%s) - t0 )) s; licd pid $pid -> $(licd_pid), restarts $restarts -> $(licd_restarts)"
  if [ "$present" = yes ]; then
    if /usr/local/bin/licctl run nuke_i -- true >/run/agent-run.out 2>&1; then say hid-plug "checkout through the HID dongle ok"; else say hid-plug "checkout FAILED: $(tail -n 2 /run/agent-run.out | tr '\n' ' ')"; fi
  else
    say hid-plug "licd journal: $(journalctl -u licd -n 8 --no-pager -o cat | tr '\n' '|')"
  fi
}

cmd_console() {
  # The host side of the box's own USB gadget serial port: what a laptop on the USB cable sees.
  for _ in $(seq 60); do [ -e /dev/ttyACM0 ] && break; sleep 1; done
  [ -e /dev/ttyACM0 ] || { say console "FAIL no /dev/ttyACM0 (licd-usb-gadget: $(systemctl is-active licd-usb-gadget.service), udc: $(ls /sys/class/udc | tr '\n' ' '))"; return; }
  say console "gadget $(cat /sys/kernel/config/usb_gadget/licd/UDC) console $(systemctl is-active licd-console@ttyGS0.service)"
  systemd-run --unit=licd-agent-console-bridge --quiet /usr/bin/node -e '
    const fs = require("fs");
    const { execFileSync } = require("child_process");
    execFileSync("stty", ["-F", "/dev/ttyACM0", "115200", "raw", "-echo", "-echoe", "-echok", "-icrnl", "-opost"]);
    const tty = fs.openSync("/dev/ttyACM0", "r+");
    const port = fs.openSync("/dev/virtio-ports/licd-console", "r+");
    // (The virtio port reads end-of-file while the host is not connected: wait, read again.)
    const pump = (from, to) => { const b = Buffer.alloc(4096); const go = () => fs.read(from, b, 0, b.length, null, (e, n) => { if (e || n === 0) { setTimeout(go, 200); return; } try { fs.writeSync(to, b, 0, n); } catch {} go(); }); go(); };
    pump(tty, port); pump(port, tty);
  '
  say console "bridge $(systemctl is-active licd-agent-console-bridge.service)"
}

echo "AGENT ready $(uname -m) $(uname -r)" >/dev/console
# The port reads end-of-file while the host is not connected (between its commands); the same
# descriptor reads again once it is (a virtio port is opened once: a second open is EBUSY).
while :; do
  if ! IFS= read -r line <&3; then
    sleep 1
    continue
  fi
  case "$line" in
    security) cmd_security ;;
    root) cmd_root ;;
    hid-prepare) cmd_hid_prepare ;;
    hid-plug) cmd_hid_plug ;;
    console) cmd_console ;;
    vendor-key) say vendor-key "$(base64 -w 0 /var/lib/licd/dev/vendor.key)" ;;
    quit) say quit END; exit 0 ;;
    '') continue ;;
    *) say "$line" "unknown command" ;;
  esac
  say "$line" END
done
exit 0
