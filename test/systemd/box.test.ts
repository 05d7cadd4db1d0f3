/**
 * The box as a box (issue 12, item 5): the files images/box-files.sh installs, checked in a
 * temporary root where they land, and `systemd-analyze security` run on that root: licd rated OK,
 * mosquitto (Debian's unit plus the shipped sandbox drop-in) at or under 3.0.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../helpers/daemon.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const read = (p: string) => readFileSync(join(REPO, p), 'utf8');
/** Lines that are not comments or blank. */
const settings = (text: string) => text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));

// Debian's own mosquitto.service (the mosquitto package is installed here for test/mosquitto/).
const DEBIAN_MOSQUITTO_UNIT = ['/usr/lib/systemd/system/mosquitto.service', '/lib/systemd/system/mosquitto.service'].find((p) => existsSync(p));

function installedRoot(): string {
  const root = tempDir('licd-box-');
  const r = spawnSync(join(REPO, 'images/box-files.sh'), [root], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`box-files.sh failed: ${r.stderr}`);
  return root;
}

/** `systemd-analyze security` of UNIT in ROOT: its overall exposure and rating, and the full output. */
function security(root: string, unit: string): { exposure: number; rating: string; out: string } {
  const r = spawnSync('systemd-analyze', ['security', '--offline=true', `--root=${root}`, '--no-pager', unit], { encoding: 'utf8' });
  const out = `${r.stdout}${r.stderr}`;
  const m = /Overall exposure level for \S+: (\d+\.\d) (\w+)/.exec(out);
  if (!m) throw new Error(`systemd-analyze security ${unit} gave no rating (exit ${r.status}; install systemd 252 or later):\n${out}`);
  return { exposure: Number(m[1]), rating: m[2]!, out };
}

test('box-files.sh installs every box file where systemd, journald, networkd and initramfs-tools read it', (t) => {
  const root = installedRoot();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const want: Record<string, string> = {
    'etc/systemd/system/licd-firstboot.service': 'systemd/licd-firstboot.service',
    'etc/systemd/network/50-wired.network': 'systemd/network/50-wired.network',
    'etc/systemd/journald.conf.d/10-licd.conf': 'systemd/journald/licd.conf',
    'etc/systemd/system.conf.d/10-licd-watchdog.conf': 'systemd/licd-watchdog.conf',
    'etc/modules-load.d/licd-hid.conf': 'systemd/licd-modules-hid.conf',
    'etc/systemd/system/mosquitto.service.d/licd-sandbox.conf': 'systemd/mosquitto/licd-sandbox.conf',
    'etc/initramfs-tools/conf.d/licd-fstype': 'systemd/initramfs/licd-fstype',
  };
  for (const [dest, src] of Object.entries(want)) {
    t.is(readFileSync(join(root, dest), 'utf8'), read(src), dest);
    t.is((statSync(join(root, dest)).mode & 0o777).toString(8), '644', dest);
  }
});

test('systemd-analyze security: licd OK, mosquitto with the sandbox drop-in at most 3.0 (Debian\'s unit alone is UNSAFE)', (t) => {
  if (!DEBIAN_MOSQUITTO_UNIT) {
    t.fail('Debian\'s mosquitto.service is not installed here (apt-get install -y mosquitto)');
    return;
  }
  const root = installedRoot();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  // As images/build.sh and the Debian package lay them out.
  copyFileSync(join(REPO, 'systemd/licd.service'), join(root, 'etc/systemd/system/licd.service'));
  mkdirSync(join(root, 'usr/lib/systemd/system'), { recursive: true });
  copyFileSync(DEBIAN_MOSQUITTO_UNIT, join(root, 'usr/lib/systemd/system/mosquitto.service'));

  const licd = security(root, 'licd.service');
  t.log(`licd.service: ${licd.exposure} ${licd.rating}`);
  t.true(['OK', 'SAFE', 'PERFECT'].includes(licd.rating), licd.out);
  const mosquitto = security(root, 'mosquitto.service');
  t.log(`mosquitto.service with licd-sandbox.conf: ${mosquitto.exposure} ${mosquitto.rating}`);
  t.true(mosquitto.exposure <= 3.0, mosquitto.out);

  // Without the drop-in, Debian's unit is what issue 12 measured: UNSAFE.
  rmSync(join(root, 'etc/systemd/system/mosquitto.service.d'), { recursive: true });
  const bare = security(root, 'mosquitto.service');
  t.log(`mosquitto.service alone: ${bare.exposure} ${bare.rating}`);
  t.true(bare.exposure > 3.0);
});

test('the sandbox lets mosquitto do its job: its own user, /run/mosquitto, TCP and the journal, no file log', (t) => {
  const dropIn = settings(read('systemd/mosquitto/licd-sandbox.conf'));
  for (const s of ['User=mosquitto', 'Group=mosquitto', 'ExecStartPre=', 'RuntimeDirectory=mosquitto', 'ProtectSystem=strict']) t.true(dropIn.includes(s), s);
  t.regex(dropIn.find((l) => l.startsWith('RestrictAddressFamilies='))!, /^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$/);
  // No IP allow list: mosquitto serves the LAN.
  t.false(dropIn.some((l) => l.startsWith('IPAddressDeny=') || l.startsWith('PrivateNetwork=')));
  const conf = settings(read('systemd/mosquitto/licd.conf'));
  t.true(conf.includes('log_dest syslog'));
  t.false(conf.some((l) => l.startsWith('log_dest file')));
  // Debian's pid_file is /run/mosquitto/mosquitto.pid: the RuntimeDirectory above.
  const build = read('images/build.sh');
  t.regex(build, /sed -i 's\|\^log_dest file /);
});

test('a box without a network: licd and mosquitto wait for no network, mosquitto binds the wildcard address', (t) => {
  const unit = settings(read('systemd/licd.service'));
  t.false(unit.some((l) => /network-online\.target/.test(l)), 'licd.service does not wait for network-online.target');
  const firstboot = settings(read('systemd/licd-firstboot.service'));
  t.false(firstboot.some((l) => /network-online\.target/.test(l)));
  // Every listener without an address: loopback at once, the LAN address when DHCP gives one.
  const listeners = settings(read('systemd/mosquitto/licd.conf')).filter((l) => l.startsWith('listener '));
  t.deepEqual(listeners, ['listener 1883', 'listener 8883']);
  const net = read('systemd/network/50-wired.network');
  t.regex(net, /^DHCP=yes$/m);
  t.regex(net, /\[DHCPv4\][^[]*^UseDNS=yes$[^[]*^UseNTP=yes$/m);
  // Debian's mosquitto.service wants network-online.target (a drop-in cannot remove that):
  // the image masks the unit that would hold it up.
  const build = read('images/build.sh');
  t.regex(build, /ln -sf \/dev\/null "\$ROOT\/etc\/systemd\/system\/systemd-networkd-wait-online\.service"/);
  t.regex(build, /systemctl enable [^\n]*systemd-resolved\.service systemd-timesyncd\.service/);
  t.regex(build, /ln -s \.\.\/run\/systemd\/resolve\/stub-resolv\.conf "\$ROOT\/etc\/resolv\.conf"/);
});

test('journal capped, hardware watchdog on, licd logs as licd, hid loaded at boot, fsck in the initrd', (t) => {
  const journald = settings(read('systemd/journald/licd.conf'));
  t.true(journald.includes('[Journal]'));
  t.regex(journald.find((l) => l.startsWith('SystemMaxUse='))!, /^SystemMaxUse=\d+M$/);
  t.true(journald.some((l) => l.startsWith('RuntimeMaxUse=')));
  const watchdog = settings(read('systemd/licd-watchdog.conf'));
  t.true(watchdog.includes('[Manager]'));
  t.regex(watchdog.find((l) => l.startsWith('RuntimeWatchdogSec='))!, /^RuntimeWatchdogSec=([1-9]|1[0-5])s$/, 'within the Pi\'s 15 s');
  t.true(settings(read('systemd/licd.service')).includes('SyslogIdentifier=licd'));
  t.deepEqual(settings(read('systemd/licd-modules-hid.conf')), ['hid']);
  t.true(settings(read('systemd/licd.service')).includes('DeviceAllow=char-hidraw rw'));
  t.deepEqual(settings(read('systemd/initramfs/licd-fstype')), ['FSTYPE=ext4']);
});
