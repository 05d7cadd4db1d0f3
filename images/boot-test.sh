#!/usr/bin/env bash
# Boots the development image (images/build.sh --dev: x86_64; or the arm64 one, --name arm64-dev)
# under qemu with software emulation, waits until licd answers over MQTT through a forwarded
# loopback port, checks the demo features, a checkout, a denial, an admin request and the watchdog
# with the project's own licctl, then powers the guest off. Exit 0 on success; otherwise non-zero
# with the tail of the guest's console log. Not part of `npm test` (minutes): see images/README.md.
#
#   images/boot-test.sh [--name amd64-dev] [--timeout 360] [--port N] [--smp 2]
set -euo pipefail

NAME=amd64-dev
TIMEOUT=360
PORT=
SMP=2
while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME=${2:?}; shift ;;
    --timeout) TIMEOUT=${2:?}; shift ;;
    --port) PORT=${2:?}; shift ;;
    --smp) SMP=${2:?}; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "boot-test.sh: unknown option $1" >&2; exit 64 ;;
  esac
  shift
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
IMG=$REPO/images/build/$NAME
RUN=$IMG/boot-test
for f in root.img vmlinuz initrd.img cmdline; do
  [ -e "$IMG/$f" ] || { echo "boot-test.sh: $IMG/$f is missing: run images/build.sh --dev first" >&2; exit 2; }
done

# The image's architecture (build.sh writes "debian: SUITE ARCH, ..." into image.txt).
ARCH=$(sed -n 's/^debian: [a-z]* \([a-z0-9]*\),.*/\1/p' "$IMG/image.txt")
case "$ARCH" in
  # i6300esb: a hardware watchdog for systemd's RuntimeWatchdogSec= (system.conf.d/10-licd-watchdog.conf).
  amd64) QEMU=qemu-system-x86_64; QEMU_PKG=qemu-system-x86; MACHINE=(-machine q35 -device i6300esb) ;;
  # The arm64 image under emulation (not the Pi: see README.md); slower than the x86_64 one.
  arm64) QEMU=qemu-system-aarch64; QEMU_PKG=qemu-system-arm; MACHINE=(-machine virt -cpu cortex-a72) ;;
  *) echo "boot-test.sh: cannot tell the image's architecture from $IMG/image.txt" >&2; exit 2 ;;
esac

# --- what the test needs on the host --------------------------------------------------------------
if ! command -v "$QEMU" >/dev/null; then
  echo "installing $QEMU_PKG"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$QEMU_PKG"; } \
    >"$IMG/qemu-install.log" 2>&1 || { tail -n 20 "$IMG/qemu-install.log" >&2; echo "boot-test.sh: cannot install $QEMU_PKG" >&2; exit 2; }
fi
command -v node >/dev/null || { echo "boot-test.sh: needs node (the host runs licctl)" >&2; exit 2; }
[ -d "$REPO/node_modules/mqtt" ] || (cd "$REPO" && npm ci --no-audit --no-fund)

rm -rf "$RUN"
mkdir -p "$RUN/home"
# The disk: the root file system, or for a Raspberry Pi build (build.sh --board rpi) the whole SD
# card (MBR, the FAT boot partition, the root partition found by its label), 1 GiB larger than the
# image as a bigger card would be, so that licd-growroot grows the root at this first boot. qemu's
# virt machine boots Debian's arm64 kernel on it; the Pi's own firmware does not run under qemu.
DISK=$IMG/root.img
if [ -f "$IMG/sdcard.img" ]; then
  cp --sparse=always "$IMG/sdcard.img" "$RUN/sdcard.img"
  truncate -s +1G "$RUN/sdcard.img"
  DISK=$RUN/sdcard.img
fi
CONSOLE=$RUN/console.log
# licctl on the host: its own home (identity, held seats), no client config from this machine.
export HOME=$RUN/home LICD_HOME=$RUN/home/licd
unset LICD_BROKER LICD_CLIENT_CONFIG LICD_MQTT_USER LICD_MQTT_PASSWORD
if [ -z "$PORT" ]; then
  PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
fi
BROKER=mqtt://127.0.0.1:$PORT
# mosquitto's TLS listener (8883), where admins log in.
TLS_PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
# licctl COMMAND [ARGS...]: the broker goes right after the command (before any "--" of licctl run).
licctl() { local cmd=$1; shift; node "$REPO/bin/licctl.mjs" "$cmd" --broker "$BROKER" "$@"; }

QEMU_PID=
HOLD_PID=
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
fail() {
  echo "BOOT TEST FAILED after $(elapsed) s: $*" >&2
  echo "---- last 60 lines of the guest console ($CONSOLE)" >&2
  tail -n 60 "$CONSOLE" >&2 || true
  exit 1
}
monitor() { # sends one command to the qemu monitor
  node -e '
    const c = require("net").connect(process.argv[1], () => { c.write(process.argv[2] + "\n"); setTimeout(() => c.end(), 300); });
    c.on("error", (e) => { console.error("monitor: " + e.message); process.exit(1); });
    c.on("data", () => {});
  ' "$RUN/monitor.sock" "$1"
}
cleanup() {
  # licctl checkout: SIGTERM, then SIGKILL (it may wait on a broker that is gone).
  if [ -n "$HOLD_PID" ]; then
    kill "$HOLD_PID" 2>/dev/null || true
    sleep 1
    kill -9 "$HOLD_PID" 2>/dev/null || true
  fi
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
    monitor quit >/dev/null 2>&1 || kill "$QEMU_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# --- boot ---------------------------------------------------------------------------------------
# -snapshot: the guest's writes go to a temporary file, so every run is the appliance's first boot
# and root.img stays as built. restrict=on: the guest reaches nothing outside (no NTP, no DNS);
# only the forwarded port connects in.
# The test agent (images/boot-agent.sh) reaches the guest as a second virtio disk (/dev/vdb) and is
# started from the kernel command line given here, never from the image: systemd.run= makes it a
# service, systemd.unit= keeps the normal boot. dummy_hcd gives the guest two USB device controllers
# looped back to its own USB host side: one for the box's console gadget (licd-usb-gadget, Pi
# image), one for a HID dongle the agent plugs in (images/boot-checks.ts).
cp "$REPO/images/boot-agent.sh" "$RUN/agent.img"
truncate -s 64K "$RUN/agent.img"
AGENT_CMDLINE='systemd.unit=multi-user.target systemd.wants=kernel-command-line.service systemd.run="/bin/sh /dev/vdb" systemd.run_success_action=none systemd.run_failure_action=none modules-load=dummy_hcd dummy_hcd.num=2'

echo "booting $IMG ($QEMU TCG, $SMP CPUs, 1024 MiB), MQTT forwarded to 127.0.0.1:$PORT"
# No -no-reboot: the console's reboot restarts the guest (boot-checks.ts); a power-off ends qemu.
"$QEMU" "${MACHINE[@]}" -accel tcg -m 1024 -smp "$SMP" -nographic \
  -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" -append "$(cat "$IMG/cmdline") $AGENT_CMDLINE" \
  -drive "file=$DISK,format=raw,if=virtio" -snapshot \
  -drive "file=$RUN/agent.img,format=raw,if=virtio,readonly=on" \
  -device virtio-serial-pci \
  -chardev "socket,id=agent,path=$RUN/agent.sock,server=on,wait=off" -device virtserialport,chardev=agent,name=licd-agent \
  -chardev "socket,id=con,path=$RUN/console.sock,server=on,wait=off" -device virtserialport,chardev=con,name=licd-console \
  -netdev "user,id=lan,restrict=on,hostfwd=tcp:127.0.0.1:$PORT-:1883,hostfwd=tcp:127.0.0.1:$TLS_PORT-:8883" -device virtio-net-pci,netdev=lan \
  -monitor "unix:$RUN/monitor.sock,server,nowait" \
  </dev/null >"$CONSOLE" 2>&1 &
QEMU_PID=$!

# --- wait for licd ---------------------------------------------------------------------------------
STATUS=
while :; do
  kill -0 "$QEMU_PID" 2>/dev/null || fail "qemu exited"
  [ "$(elapsed)" -lt "$TIMEOUT" ] || fail "licd did not answer within $TIMEOUT s"
  if STATUS=$(timeout 30 node "$REPO/bin/licctl.mjs" status --json --broker "$BROKER" 2>"$RUN/status.err"); then break; fi
  sleep 2
done
SERVING=$(elapsed)
echo "licd answered over MQTT $SERVING s after qemu started"
echo "$STATUS" >"$RUN/status.json"

# --- checks -------------------------------------------------------------------------------------------
node -e '
  const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const want = ["vray_render", "vray_interface", "vray_distributed", "nuke_i"];
  const have = s.features.map((f) => f.feature);
  const problems = [];
  if (s.server.state !== "online") problems.push(`server state is ${s.server.state}, not online`);
  if (!s.server.dongle.present) problems.push("dongle not present");
  for (const w of want) if (!have.includes(w)) problems.push(`feature ${w} missing (have ${have.join(", ")})`);
  const n = s.features.find((f) => f.feature === "nuke_i");
  if (n && (n.total !== 1 || n.free !== 1)) problems.push(`nuke_i: ${n.free} of ${n.total} free, expected 1 of 1`);
  if (problems.length) { console.error(problems.join("\n")); process.exit(1); }
  console.log(`status: ${s.server.state}, dongle ${s.server.dongle.serial}, features ${have.join(", ")}`);
' "$RUN/status.json" || fail "status check"

# A checkout of nuke_i (1 seat) held by a background licctl...
# (node itself in the background, not a subshell, so that HOLD_PID is licctl's own pid)
node "$REPO/bin/licctl.mjs" checkout nuke_i --broker "$BROKER" >"$RUN/checkout.out" 2>&1 &
HOLD_PID=$!
for _ in $(seq 60); do
  grep -q '^holding' "$RUN/checkout.out" && break
  kill -0 "$HOLD_PID" 2>/dev/null || break
  sleep 0.5
done
grep -q '^granted nuke_i' "$RUN/checkout.out" || { cat "$RUN/checkout.out" >&2; fail "checkout of nuke_i was not granted"; }
echo "checkout: $(head -n 1 "$RUN/checkout.out")"
licctl status nuke_i --json >"$RUN/status-held.json" || fail "status while holding"
node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); const n=s.features[0]; process.exit(n.leased===1&&n.free===0?0:1)' "$RUN/status-held.json" \
  || fail "status does not show the held seat: $(cat "$RUN/status-held.json")"

# ...then a second checkout is denied, with NO_SEATS.
set +e
licctl run nuke_i -- true >"$RUN/denied.out" 2>&1
rc=$?
set -e
[ "$rc" != 0 ] && grep -q NO_SEATS "$RUN/denied.out" || { cat "$RUN/denied.out" >&2; fail "the second checkout was not denied with NO_SEATS (exit $rc)"; }
echo "denial: $(grep NO_SEATS "$RUN/denied.out" | head -n 1)"

# licctl checkin (the same machine, the same LICD_HOME) makes the holder check its seat in.
licctl checkin nuke_i >"$RUN/checkin.out" 2>&1 || { cat "$RUN/checkin.out" >&2; fail "licctl checkin"; }
for _ in $(seq 40); do kill -0 "$HOLD_PID" 2>/dev/null || break; sleep 0.5; done
kill -0 "$HOLD_PID" 2>/dev/null && fail "licctl checkout still running after licctl checkin"
wait "$HOLD_PID" || true
HOLD_PID=
grep -q '^checked in' "$RUN/checkout.out" || { cat "$RUN/checkout.out" >&2; fail "no check-in"; }
licctl status nuke_i --json >"$RUN/status-free.json" || fail "status after check-in"
node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); process.exit(s.features[0].free===1?0:1)' "$RUN/status-free.json" \
  || fail "nuke_i not free after check-in"
echo "checkin: nuke_i free again"

# The admin password: made by licd-firstboot at this first boot (the image carries none) and shown
# on the console's login banner (/etc/issue.d/licd.issue), which the serial getty prints; the
# banner's certificate fingerprint must be the one licd shows.
for _ in $(seq 60); do grep -q 'admin password: ' "$CONSOLE" && break; sleep 1; done
ADMIN_PW=$(tr -d '\r' <"$CONSOLE" | sed -n 's/.*admin password: \([A-Z0-9-]*\).*/\1/p' | tail -n 1)
[ -n "$ADMIN_PW" ] || fail "the console shows no admin password (licd-firstboot.service, /etc/issue.d/licd.issue)"
( umask 077; printf '%s\n' "$ADMIN_PW" >"$RUN/admin.password" )
BANNER_FP=$(tr -d '\r' <"$CONSOLE" | sed -n 's/.*TLS certificate: \(SHA256:[0-9A-F:]*\).*/\1/p' | tail -n 1)
echo "console banner: admin password ${ADMIN_PW%%-*}-..., TLS $BANNER_FP"

# An admin request through mosquitto's TLS listener, password file and ACL, trusting the
# certificate the box made at its first boot by the fingerprint licd shows in its state.
FP=$(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); console.log(s.server.tls?.fingerprint ?? "")' "$RUN/status.json")
[ -n "$FP" ] || fail "the server state shows no TLS fingerprint (licd-firstboot.service, mqtt.brokerCertFile)"
[ "$FP" = "$BANNER_FP" ] || fail "the console banner shows TLS $BANNER_FP, licd shows $FP"
# (licctl itself, not the function above: it would add a second --broker, which licctl refuses)
node "$REPO/bin/licctl.mjs" borrows --broker "mqtts://127.0.0.1:$TLS_PORT" --fingerprint "$FP" --user admin --password-file "$RUN/admin.password" >"$RUN/admin.out" 2>&1 \
  || { cat "$RUN/admin.out" >&2; fail "admin request over TLS (licctl borrows as admin)"; }
echo "admin: licctl borrows answered over mqtts ($FP)"
# The plain listener does not take the admin login (its password file has only licd).
if licctl borrows --user admin --password-file "$RUN/admin.password" >"$RUN/admin-plain.out" 2>&1; then
  fail "the admin logged in on plain MQTT"
fi
echo "admin: refused on plain MQTT"

# systemd's watchdog (WatchdogSec=30 in licd.service) would restart a licd whose WATCHDOG=1
# pings do not arrive: once licd has run for 45 s, it must still be the same process.
SINCE=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).server.since)' "$RUN/status.json")
UP=$(node -e 'console.log(Math.floor((Date.now() - Date.parse(process.argv[1])) / 1000))' "$SINCE")
if [ "$UP" -lt 45 ]; then sleep $(( 45 - UP )); fi
licctl status --json >"$RUN/status-later.json" || fail "status 45 s after licd started"
SINCE2=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).server.since)' "$RUN/status-later.json")
[ "$SINCE" = "$SINCE2" ] || fail "licd restarted (up since $SINCE, now since $SINCE2): watchdog?"
echo "watchdog: licd still up since $SINCE"

# The box as a box (issue 12): the journal (forwarded to the development image's console) shows
# mosquitto logging through syslog, licd under its own name, and systemd using the watchdog.
grep -aq 'mosquitto\[[0-9]*\]: .*running' "$CONSOLE" || fail "no mosquitto log line in the journal (log_dest syslog)"
grep -aq ' licd\[[0-9]*\]: ' "$CONSOLE" || fail "no journal line from licd under its own name (SyslogIdentifier=licd)"
if [ "$ARCH" = amd64 ]; then
  grep -aqi 'hardware watchdog' "$CONSOLE" || fail "systemd does not use the hardware watchdog (RuntimeWatchdogSec=)"
fi
echo "journal: mosquitto and licd log there; watchdog: $(grep -aio 'using hardware watchdog[^,]*' "$CONSOLE" | head -n 1)"
if [ "$DISK" = "$RUN/sdcard.img" ]; then
  grep -aq 'licd-growroot: grew partition 2' "$CONSOLE" || fail "the root partition was not grown to the card (licd-growroot.service)"
  echo "SD card: $(grep -ao 'licd-growroot: root file system: [^ ]*' "$CONSOLE" | tail -n 1)"
fi
# Two first boots of one image make different secrets: every run of this test is a first boot
# (-snapshot); the certificates seen so far are kept next to the image.
if [ -f "$IMG/first-boot-certificates.txt" ] && grep -qx "$FP" "$IMG/first-boot-certificates.txt"; then
  fail "this first boot made the certificate $FP that an earlier first boot of the same image made"
fi
echo "$FP" >>"$IMG/first-boot-certificates.txt"
echo "first boot: certificate $FP is new ($(wc -l <"$IMG/first-boot-certificates.txt") first boots of this image so far)"

# --- power off -------------------------------------------------------------------------------------
# Inside the box: systemd-analyze security, the root grown to the card, the console over the USB
# gadget serial port (status, a license import, a reboot), a HID dongle plugged in after start.
CHECK_ARGS=()
if [ -f "$IMG/sdcard.img" ]; then
  CHECK_ARGS+=(--console --root-min-mib $(( $(stat -c %s "$IMG/root.img") / 1048576 + 512 )))
fi
(cd "$REPO" && node --import tsx images/boot-checks.ts "$RUN" "$BROKER" "$RUN/admin.password" "${CHECK_ARGS[@]}") || fail "the checks inside the box (images/boot-checks.ts)"

T1=$(date +%s)
monitor system_powerdown || fail "cannot reach the qemu monitor"
for _ in $(seq 120); do
  kill -0 "$QEMU_PID" 2>/dev/null || break
  sleep 0.5
done
if kill -0 "$QEMU_PID" 2>/dev/null; then fail "the guest did not power off within 60 s of the power button"; fi
wait "$QEMU_PID" || true
QEMU_PID=
grep -q 'reboot: Power down' "$CONSOLE" || fail "qemu exited without the guest powering down"
echo "powered off in $(( $(date +%s) - T1 )) s"
echo "BOOT TEST PASSED: licd serving $SERVING s after start, total $(elapsed) s (console log: $CONSOLE)"
