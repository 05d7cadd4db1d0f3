# licd Pi instruction count (npm run bench:pi): runs INSIDE the arm64 VM that
# bench/pi-instructions.ts boots in qemu's icount mode, never on an appliance. The host hands this
# file to the guest as a raw virtio disk (/dev/vdb) and starts it from the kernel command line
# (systemd.run=, as images/boot-test.sh does; the image's own licd, mosquitto and first-boot units
# are masked there). The payload is a tar on the third disk (/dev/vdc): the compiled licd (dist/),
# the license, the bundled guest program (bench/pi/guest.ts) and the echo responder. The output
# goes to the virtio port "licd-pi-out" (a file on the host). When this script ends, systemd
# powers the guest off (systemd.run_success_action / run_failure_action).
# (sh reads this file from a block device; `exit` at the end keeps it from reading the padding.)
OUT=/dev/virtio-ports/licd-pi-out
for _ in $(seq 300); do [ -e "$OUT" ] && break; sleep 1; done
exec 3>"$OUT"
echo "LOG agent up: $(uname -m) $(uname -r), $(nproc) CPU, $(sed -n 's/^MemTotal: *//p' /proc/meminfo)" >&3
ROOT=/opt/licd-pi
rm -rf "$ROOT"
mkdir -p "$ROOT"
if ! tar -xf /dev/vdc -C "$ROOT"; then echo "ERROR cannot unpack the payload from /dev/vdc" >&3; exit 1; fi
# The image's modules (native classic-level for arm64) serve the current compiled build: the
# dependencies are the same (the host checks package.json against the image's).
ln -sfn /opt/licd/node_modules "$ROOT/node_modules"
echo "LOG payload unpacked: licd $(cat "$ROOT/REVISION" 2>/dev/null)" >&3
node "$ROOT/bench/guest.mjs" "$ROOT/plan.json" >&3 2>&1
rc=$?
echo "LOG guest program exited with $rc" >&3
echo "DONE $rc" >&3
exec 3>&-
sync
exit 0
