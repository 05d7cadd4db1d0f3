/**
 * Issue 15: the policy file and its rules, pure. Parsing (every error names its line and the fix),
 * every directive through the license service with an injected clock, their interplay, and the
 * invariant under a randomized sequence of 10,000 steps.
 */
import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import type { Borrow } from '../../src/core/model.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { judge, matches, parsePolicy, type Policy } from '../../src/core/policy.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { ManualClock } from '../helpers/daemon.ts';

const lic = (name: string, seats: number): FeatureLicense => ({ name, product: name, version: '6.2', seats, expires: null, type: 'render', borrow: { allowed: true, maxHours: 336 } });

function service(policy: string, features: FeatureLicense[] = [lic('vray_render', 4)]) {
  const clock = new ManualClock();
  const store = new MemoryStore();
  let n = 0;
  const table = new SeatTable(features, () => `L${++n}`);
  table.setPolicy(parsePolicy(policy));
  const svc = new LicenseService({ clock, store, table, entitlement: null, policy: defaultLeasePolicy, log: silentLog, version: 'test', maxPayloadBytes: 4096, holderHash: sha256HolderHash });
  let req = 0;
  /** Checks out as user@host (one process per call); returns 'ok' and the lease id, or the code and message. */
  const checkout = async (user: string, host: string, o: { feature?: string; count?: number } = {}) => {
    const a = await svc.handle(`${user}-${host}`.replace(/[^A-Za-z0-9_-]/g, '_'), false, new TextEncoder().encode(
      JSON.stringify({ id: String(++req), op: 'checkout', feature: o.feature ?? 'vray_render', count: o.count ?? 1, user, host, pid: req, holder: 'holder-secret-of-the-test-client' }),
    ));
    return a.ok ? { code: 'ok', message: '', lease: (a.result as { lease: { id: string } }).lease.id } : { code: a.error.code, message: a.error.message, lease: '' };
  };
  const checkin = async (user: string, host: string, lease: string) => {
    const a = await svc.handle(`${user}-${host}`.replace(/[^A-Za-z0-9_-]/g, '_'), false, new TextEncoder().encode(JSON.stringify({ id: String(++req), op: 'checkin', leases: [lease], holder: 'holder-secret-of-the-test-client' })));
    if (!a.ok) throw new Error(a.error.message);
  };
  return { clock, store, table, svc, checkout, checkin };
}

// ---- the file format ---------------------------------------------------------------------------

test('a policy file with every directive parses; comments, blank lines and case of directives do not matter', (t) => {
  const p = parsePolicy(`# the lighting team keeps two seats
GROUP lighting alice bob
group lighting carol        # more members on a second line
HOST_GROUP farm render-* ws0?
RESERVE 2 vray_render GROUP lighting
MAX 3 vray_render USER alice
INCLUDE nuke_i GROUP lighting
EXCLUDE nuke_i HOST Kiosk01
QUEUE vray_render on max 50
PRIORITY lighting 10

`);
  t.is(p.rules, 9);
  t.deepEqual(p.queues.get('vray_render'), { on: true, max: 50, line: 9 });
  t.is(p.priorities.get('lighting')?.value, 10);
  t.deepEqual([...p.groups.get('lighting')!.users], ['alice', 'bob', 'carol']);
  t.true(matches(p, { type: 'HOST_GROUP', name: 'farm', line: 4 }, 'x', 'RENDER-17'));
  t.true(matches(p, { type: 'HOST_GROUP', name: 'farm', line: 4 }, 'x', 'ws05'));
  t.false(matches(p, { type: 'HOST_GROUP', name: 'farm', line: 4 }, 'x', 'ws105'));
  t.true(matches(p, { type: 'HOST', name: 'kiosk01', line: 8 }, 'x', 'KIOSK01'));
  t.deepEqual(p.features.get('vray_render')!.reserve, [{ type: 'GROUP', name: 'lighting', line: 5, count: 2 }]);
});

test('every error names the line and the fix, and all problems are reported at once', (t) => {
  const bad = (text: string) => {
    const e = t.throws(() => parsePolicy(text), { code: 'POLICY_INVALID' } as never) as unknown as { message: string; details: { problems: string[] } };
    return e;
  };
  const e = bad('GROUP lighting alice\n\n\n\n\n\n\n\n\n\n\nRESERVE vray_render GROUP lighting\n');
  t.is(e.message, 'policy line 12: RESERVE needs a count, a feature and USER|GROUP|HOST|HOST_GROUP NAME: RESERVE 2 vray_render GROUP lighting (too few words), got "RESERVE vray_render GROUP lighting"');
  t.regex(bad('MAX two f USER a').message, /^policy line 1: MAX needs a count.*the count must be a whole number, not "two"/);
  t.regex(bad('RESERVE 0 f USER a').message, /the count must be a whole number from 1/);
  t.regex(bad('INCLUDE f PROJECT x').message, /^policy line 1: INCLUDE needs a feature and USER\|GROUP\|HOST\|HOST_GROUP NAME.*"PROJECT" is not USER, GROUP, HOST or HOST_GROUP/);
  t.regex(bad('RESERVE 1 f GROUP nobody').message, /^policy line 1: GROUP nobody is not defined; add a line GROUP nobody USER\.\.\., or fix the name/);
  t.regex(bad('GROUP lonely').message, /^policy line 1: GROUP needs a group name and one or more user names/);
  t.regex(bad('FEATURE x').message, /^policy line 1: unknown directive "FEATURE"; use GROUP, HOST_GROUP, RESERVE, MAX, INCLUDE, EXCLUDE, QUEUE, PRIORITY, LINGER, TIMEOUT, BORROW_MAX or BORROW_HOURS/);
  t.regex(bad('QUEUE f maybe').message, /^policy line 1: QUEUE needs a feature and on or off.*"maybe" is not on or off/);
  t.regex(bad('QUEUE f on\nQUEUE f off').message, /^policy line 2: .*QUEUE f was set already on line 1/);
  t.regex(bad('GROUP g a\nPRIORITY g high').message, /^policy line 2: PRIORITY needs a group and a whole number from -1000 to 1000/);
  t.regex(bad('PRIORITY nobody 5').message, /^policy line 1: GROUP nobody is not defined/);
  t.regex(bad('TIMEOUT vray_render 5').message, /^policy line 1: TIMEOUT needs a feature and a number of seconds from 60 to 604800/);
  t.regex(bad('LINGER vray_render 0').message, /^policy line 1: LINGER needs a feature and a number of seconds from 1 to 86400/);
  t.regex(bad('EXCLUDE f HOST ws*').message, /patterns go in a HOST_GROUP/);
  const many = bad('MAX x f USER a\nGROUP g a\nEXCLUDE f USER\nINCLUDE f GROUP h\n');
  t.deepEqual(many.details.problems.map((p) => Number(/line (\d+)/.exec(p)![1])), [1, 3, 4]);
  t.regex(many.message, /\(and 2 more problem\(s\): policy line 3: .*; policy line 4: /);
});

// ---- every directive through the service ------------------------------------------------------

test('RESERVE: free seats kept for a group are refused to others, naming the rule; the group takes them; NO_SEATS stays for no free seat', async (t) => {
  const policy = ['GROUP lighting alice bob', ...Array(10).fill('# ...'), 'RESERVE 2 vray_render GROUP lighting'].join('\n');
  const { checkout } = service(policy);
  t.is((await checkout('dave', 'ws1')).code, 'ok');
  t.is((await checkout('erin', 'ws2')).code, 'ok');
  const r = await checkout('frank', 'ws3');
  t.is(r.code, 'POLICY_RESERVED');
  t.is(r.message, 'vray_render: 2 of 4 free, but both are reserved for group lighting (policy line 12); 1 wanted. Retry when a seat is checked in');
  t.is((await checkout('alice', 'ws4')).code, 'ok');
  t.is((await checkout('bob', 'ws5')).code, 'ok');
  const none = await checkout('carol', 'ws6');
  t.is(none.code, 'NO_SEATS');
});

test('RESERVE: seats the group already holds count against its reservation', async (t) => {
  const { checkout, checkin } = service('GROUP lighting alice bob\nRESERVE 2 vray_render GROUP lighting');
  const a = await checkout('alice', 'ws1');
  t.is(a.code, 'ok');
  // 3 free, 1 of them still kept for lighting: two others get seats, the third does not.
  t.is((await checkout('dave', 'ws2')).code, 'ok');
  t.is((await checkout('erin', 'ws3')).code, 'ok');
  t.regex((await checkout('frank', 'ws4')).message, /^vray_render: 1 of 4 free, but it is reserved for group lighting \(policy line 2\)/);
  await checkin('alice', 'ws1', a.lease);
  // alice checked in: both reserved seats are free again, and the group still has them.
  t.regex((await checkout('frank', 'ws4')).message, /2 of 4 free, but both are reserved for group lighting/);
  t.is((await checkout('bob', 'ws5', { count: 2 })).code, 'ok');
});

test('RESERVE for a user, a host and a host group; a count wanted above what is usable names every reservation', async (t) => {
  const { checkout } = service('HOST_GROUP farm render-*\nRESERVE 1 vray_render USER alice\nRESERVE 1 vray_render HOST ws9\nRESERVE 1 vray_render HOST_GROUP farm', [lic('vray_render', 5)]);
  const r = await checkout('dave', 'ws1', { count: 3 });
  t.is(r.code, 'POLICY_RESERVED');
  t.regex(r.message, /^vray_render: 5 of 5 free, but only 2 may be used by dave@ws1, the rest are reserved: 1 for user alice \(policy line 2\), 1 for host ws9 \(policy line 3\), 1 for host group farm \(policy line 4\); 3 wanted/);
  t.is((await checkout('dave', 'render-01', { count: 3 })).code, 'ok'); // farm's own seat plus the two unreserved
  t.is((await checkout('zed', 'WS9')).code, 'ok');
  t.is((await checkout('alice', 'ws2')).code, 'ok');
});

test('MAX per user, per group (all members together), per host and per host group; borrows count too', async (t) => {
  const { checkout, checkin, table, clock } = service(
    'GROUP comp carol dan\nHOST_GROUP farm render-*\nMAX 2 vray_render USER alice\nMAX 2 vray_render GROUP comp\nMAX 1 vray_render HOST ws7\nMAX 3 vray_render HOST_GROUP farm',
    [lic('vray_render', 20)],
  );
  const first = await checkout('alice', 'ws1');
  t.is((await checkout('alice', 'ws2')).code, 'ok');
  const r = await checkout('alice', 'ws3');
  t.is(r.code, 'POLICY_DENIED');
  t.is(r.message, 'vray_render: user alice may hold at most 2 seat(s) at once (policy line 3) and holds 2; 1 more wanted by alice@ws3. Check one in first, or ask an admin to change the policy');
  await checkin('alice', 'ws1', first.lease);
  t.is((await checkout('alice', 'ws3')).code, 'ok');
  t.is((await checkout('carol', 'ws4')).code, 'ok');
  t.regex((await checkout('dan', 'ws5', { count: 2 })).message, /group comp may hold at most 2 seat\(s\) at once \(policy line 4\) and holds 1; 2 more wanted/);
  t.is((await checkout('dan', 'ws5')).code, 'ok');
  t.is((await checkout('zed', 'WS7')).code, 'ok');
  t.regex((await checkout('yan', 'ws7')).message, /host ws7 may hold at most 1 seat/);
  t.is((await checkout('a1', 'render-1', { count: 2 })).code, 'ok');
  // A borrow on a farm host takes the group's third seat; a lease on another farm host is then refused.
  const b = table.borrow(borrowOf('b1', 'vray_render', 'x1', 'render-2', 1, clock.now()), clock.now());
  t.is(b.result.hostName, 'render-2');
  t.regex((await checkout('a2', 'render-3')).message, /host group farm may hold at most 3 seat\(s\) at once \(policy line 6\) and holds 3/);
});

test('INCLUDE: only those named may use a feature; EXCLUDE wins over INCLUDE; other features are untouched', async (t) => {
  const { checkout } = service('GROUP comp carol dan\nINCLUDE nuke_i GROUP comp\nINCLUDE nuke_i USER eve\nEXCLUDE nuke_i HOST kiosk\nEXCLUDE vray_render USER mallory', [lic('nuke_i', 4), lic('vray_render', 4)]);
  t.is((await checkout('carol', 'ws1', { feature: 'nuke_i' })).code, 'ok');
  t.is((await checkout('eve', 'ws1', { feature: 'nuke_i' })).code, 'ok');
  const r = await checkout('frank', 'ws2', { feature: 'nuke_i' });
  t.is(r.code, 'POLICY_DENIED');
  t.is(r.message, 'nuke_i: only group comp, user eve may use it (policy lines 2, 3), and frank@ws2 is not among them; ask an admin to change the policy (licctl policy show)');
  const x = await checkout('dan', 'KIOSK', { feature: 'nuke_i' });
  t.is(x.message, 'nuke_i: dan@KIOSK may not use it: host kiosk is excluded (policy line 4); ask an admin to change the policy (licctl policy show)');
  t.is((await checkout('frank', 'ws2')).code, 'ok');
  t.is((await checkout('mallory', 'ws2')).code, 'POLICY_DENIED');
});

test('a denial is said at once even when no seat is free, so nobody retries for a seat the policy forbids; a reservation is not', async (t) => {
  const { checkout } = service('EXCLUDE vray_render USER mallory\nMAX 1 vray_render USER alice\nRESERVE 1 vray_render USER bob', [lic('vray_render', 2)]);
  t.is((await checkout('alice', 'ws1')).code, 'ok');
  t.is((await checkout('bob', 'ws1')).code, 'ok');
  t.is((await checkout('mallory', 'ws2')).code, 'POLICY_DENIED');
  t.is((await checkout('alice', 'ws2')).code, 'POLICY_DENIED');
  t.is((await checkout('carol', 'ws2')).code, 'NO_SEATS');
});

test('interplay: RESERVE plus MAX plus INCLUDE; a member past its MAX cannot use its own reservation', async (t) => {
  const { checkout } = service('GROUP lighting alice bob\nINCLUDE vray_render GROUP lighting\nINCLUDE vray_render USER dave\nRESERVE 2 vray_render GROUP lighting\nMAX 1 vray_render USER alice\nMAX 2 vray_render USER dave', [lic('vray_render', 5)]);
  t.is((await checkout('dave', 'ws1', { count: 2 })).code, 'ok');
  t.is((await checkout('dave', 'ws1', { count: 1 })).code, 'POLICY_DENIED'); // MAX 2 for dave
  t.is((await checkout('alice', 'ws2')).code, 'ok');
  t.is((await checkout('alice', 'ws3')).code, 'POLICY_DENIED'); // MAX 1 for alice, though lighting has a seat kept
  t.is((await checkout('bob', 'ws4')).code, 'ok');
  t.is((await checkout('zed', 'ws4')).code, 'POLICY_DENIED'); // not included
});

test('a policy change applies to new checkouts at once; seats already out stay', async (t) => {
  const { checkout, table } = service('', [lic('vray_render', 2)]);
  t.is((await checkout('alice', 'ws1')).code, 'ok');
  table.setPolicy(parsePolicy('EXCLUDE vray_render USER alice\nRESERVE 1 vray_render USER bob'));
  t.is(table.availability('vray_render', 0).leased, 1);
  t.is((await checkout('alice', 'ws2')).code, 'POLICY_DENIED');
  t.is((await checkout('carol', 'ws2')).code, 'POLICY_RESERVED');
  t.is((await checkout('bob', 'ws2')).code, 'ok');
});

test('a repeated checkout by the same holder extends its lease without being judged again', async (t) => {
  const { svc, table } = service('MAX 1 vray_render USER alice');
  const body = (n: number) => new TextEncoder().encode(JSON.stringify({ id: String(n), op: 'checkout', feature: 'vray_render', user: 'alice', host: 'ws1', pid: 7, holder: 'holder-secret-of-the-test-client' }));
  t.true((await svc.handle('c1', false, body(1))).ok);
  const again = await svc.handle('c1', false, body(2));
  t.true(again.ok);
  t.is(again.ok && (again.result as { status: string }).status, 'extended');
  t.is(table.availability('vray_render', 0).leased, 1);
});

// ---- the invariant, randomized ---------------------------------------------------------------

function borrowOf(id: string, feature: string, user: string, host: string, count: number, now: number): Borrow {
  return {
    id,
    feature,
    count,
    user,
    hostId: `hid-${host}`,
    hostName: host,
    clientKey: 'k'.repeat(64),
    clientId: null,
    since: now,
    expiresAt: now + 3600_000,
    lost: false,
    autoRenew: false,
    via: 'online',
    requestId: id,
    tokenId: `t-${id}`,
    tokenIssuedAt: now,
    hours: 1,
  };
}

/** A tiny deterministic generator (mulberry32), so a failure can be replayed from its seed. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const POLICIES = [
  '',
  'GROUP lighting u0 u1 u2\nRESERVE 2 f GROUP lighting\nMAX 2 f USER u3',
  'HOST_GROUP farm h1 h2*\nRESERVE 1 f HOST_GROUP farm\nRESERVE 1 f USER u4\nMAX 3 f HOST_GROUP farm\nEXCLUDE f USER u5',
  'GROUP a u0 u1\nGROUP b u2 u3\nINCLUDE f GROUP a\nINCLUDE f GROUP b\nINCLUDE f USER u4\nRESERVE 3 f GROUP b\nMAX 2 f GROUP a',
  'GROUP all u0 u1 u2 u3 u4 u5\nRESERVE 2 f GROUP all\nRESERVE 1 f USER u0\nMAX 1 f HOST h0',
  'GROUP lighting u0 u1\nRESERVE 1 f GROUP lighting\nLINGER f 5\nMAX 2 f USER u2',
];

/** What the rules allow, written again independently of src/core/policy.ts: the oracle. */
function allowed(p: Policy, held: Array<{ user: string; host: string; count: number }>, user: string, host: string, count: number, free: number): boolean {
  const r = p.features.get('f');
  if (!r) return true;
  const is = (s: { type: string; name: string }, u: string, h: string) =>
    s.type === 'USER' ? u === s.name : s.type === 'HOST' ? h === s.name : s.type === 'GROUP' ? p.groups.get(s.name)!.users.has(u) : matches(p, { type: 'HOST_GROUP', name: s.name, line: 0 }, u, h);
  if (r.exclude.some((s) => is(s, user, host))) return false;
  if (r.include.length > 0 && !r.include.some((s) => is(s, user, host))) return false;
  for (const m of r.max) if (is(m, user, host) && held.filter((x) => is(m, x.user, x.host)).reduce((a, x) => a + x.count, 0) + count > m.count) return false;
  let kept = 0;
  for (const s of r.reserve) {
    if (is(s, user, host)) continue;
    const used = held.filter((x) => is(s, x.user, x.host)).reduce((a, x) => a + x.count, 0);
    kept += Math.max(0, s.count - used);
  }
  return count <= free - kept;
}

test('invariant over 10,000 random steps: leased (lingering included) + borrowed + held <= count, and every grant is one the rules allow', (t) => {
  for (const seed of [1, 2]) {
    const rand = rng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    let now = Date.parse('2026-06-01T12:00:00Z');
    let n = 0;
    const table = new SeatTable([lic('f', 6)], () => `X${++n}`);
    let policy = parsePolicy(POLICIES[1]!);
    table.setPolicy(policy);
    const users = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
    const hosts = ['h0', 'h1', 'h2', 'h20', 'h3'];
    let grants = 0;
    let refusals = 0;
    let lingerBacks = 0;
    for (let step = 0; step < 5000; step++) {
      const op = rand();
      const user = pick(users);
      const host = pick(hosts);
      const count = rand() < 0.8 ? 1 : 2;
      const free = table.free('f', now);
      const held = table.holdings('f');
      const ok = allowed(policy, held, user, host, count, free);
      if (op < 0.45 || (op >= 0.55 && op < 0.65)) {
        const isBorrow = op >= 0.55;
        try {
          let reclaimed = false;
          if (isBorrow) table.borrow(borrowOf(`B${step}`, 'f', user, host, count, now), now);
          else reclaimed = table.checkout({ clientId: `c${step}`, holder: 'h', pid: step, user, host, feature: 'f', count, ttlMs: 5000 + Math.floor(rand() * 20_000) }, now).result.reclaimed === true;
          grants++;
          // A seat lingering for this user@host comes back to them (LINGER); every other grant is judged.
          if (reclaimed) lingerBacks++;
          else t.true(ok, `seed ${seed} step ${step}: ${user}@${host} got ${count} seat(s) that the rules forbid`);
        } catch (e) {
          refusals++;
          const code = (e as { code: string }).code;
          t.true(['NO_SEATS', 'POLICY_DENIED', 'POLICY_RESERVED', 'QUARANTINE'].includes(code), String(e));
          // (A refused reclaim of a lingering seat judged only the extra seats: not comparable.)
          if (code === 'NO_SEATS') t.true(count > free);
          else if (!table.allLeases().some((l) => l.lingering && l.user === user && l.host === host)) t.false(ok && count <= free, `seed ${seed} step ${step}: refused ${code} but the rules allow it`);
        }
      } else if (op < 0.55) {
        const leases = table.allLeases();
        if (leases.length > 0) {
          const l = pick(leases);
          table.checkin(l.clientId, 'h', { ids: [l.id] }, now);
        }
      } else if (op < 0.75) {
        const borrows = table.allBorrows();
        if (borrows.length > 0) table.returnBorrow(pick(borrows).id);
      } else if (op < 0.93) {
        now += Math.floor(rand() * 6000);
        table.reap(now);
      } else if (op < 0.97) {
        policy = parsePolicy(pick(POLICIES));
        table.setPolicy(policy);
      } else {
        table.setHold('f', Math.floor(rand() * 3), now + Math.floor(rand() * 10_000));
      }
      const a = table.availability('f', now);
      if (a.leased + a.borrowed + a.held > a.total && a.held === 0) t.fail(`seed ${seed} step ${step}: ${a.leased} + ${a.borrowed} > ${a.total}`);
      t.true(a.leased + a.borrowed <= a.total);
      t.deepEqual(table.checkInvariants(now), []);
    }
    t.true(grants > 500 && refusals > 500, `seed ${seed}: ${grants} grants, ${refusals} refusals: the walk must exercise both`);
    t.true(lingerBacks > 0, `seed ${seed}: a lingering seat was taken back at least once`);
  }
});

test('judge alone: no policy for a feature allows anything', (t) => {
  t.notThrows(() => judge(parsePolicy('MAX 1 other USER a'), 'f', { user: 'a', host: 'h', count: 3 }, 3, 3, () => []));
});
