/**
 * licd's web page (docs/web.md): overview, leases and borrows, the borrow wizard, activation, usage
 * charts (also over time), the audit log and its check in the browser, settings; over MQTT through
 * the broker. Preact renders every string as text (no HTML from the network).
 */
import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Link, PREFIX, RequestError } from './link.ts';
import { exportStart, parseAuditExport, vendorPublicKeyOf as vendorKeyOf } from '../../core/audit-file.ts';
import type { AuditVerdict } from '../../core/audit.ts';
import { canVerify, verifyInBrowser } from './verify.ts';
import './style.css';

type Json = Record<string, any>;

interface Who {
  user: string | null;
  admin: boolean;
}

type Tab = 'overview' | 'leases' | 'borrow' | 'activation' | 'history' | 'audit' | 'settings';

export function fmtTime(iso: unknown): string {
  if (typeof iso !== 'string') return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

function download(name: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function errText(e: unknown): string {
  return e instanceof RequestError ? `${e.code}: ${e.message}` : String((e as Error)?.message ?? e);
}

const plainHttpFromAfar = location.protocol === 'http:' && !/^(localhost|127\.[\d.]+|\[::1\])$/.test(location.hostname);

function SignIn(props: { onSignIn: (user: string | null, password: string | null) => Promise<void>; busy: boolean; error: string | null }) {
  const [user, setUser] = useState('admin');
  const [password, setPassword] = useState('');
  return (
    <section class="signin" aria-labelledby="signin-h">
      <h2 id="signin-h">Sign in</h2>
      {plainHttpFromAfar && (
        <p class="warn" role="note">
          This page came over plain HTTP from another machine: licd takes passwords only over HTTPS (turn on <code>broker.tls</code>, then open the page with https://).
        </p>
      )}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void props.onSignIn(user, password);
        }}
      >
        <label>
          User <input name="user" autocomplete="username" value={user} onInput={(e) => setUser((e.target as HTMLInputElement).value)} required />
        </label>
        <label>
          Password <input name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} required />
        </label>
        <button type="submit" disabled={props.busy}>
          Sign in
        </button>
        <button type="button" class="secondary" disabled={props.busy} onClick={() => void props.onSignIn(null, null)}>
          View without signing in
        </button>
      </form>
      {props.error && (
        <p class="error" role="alert">
          {props.error}
        </p>
      )}
    </section>
  );
}

function Bar(props: { f: Json }) {
  const f = props.f;
  const total = Math.max(1, Number(f.total) || 0);
  const pct = (n: unknown) => `${(100 * (Number(n) || 0)) / total}%`;
  return (
    <div class="bar" role="img" aria-label={`${f.leased} leased, ${f.borrowed} borrowed, ${f.held} held, ${f.free} free of ${f.total}`}>
      <span class="leased" style={{ width: pct(f.leased) }} />
      <span class="borrowed" style={{ width: pct(f.borrowed) }} />
      <span class="held" style={{ width: pct(f.held) }} />
    </div>
  );
}

function lastChange(features: Json[]): string | undefined {
  const t = features.map((f) => (typeof f.updated === 'string' ? f.updated : '')).sort();
  return t[t.length - 1] || undefined;
}

/** A failover box's state (docs/scale-out.md, "Failover server"), as licctl status words it. */
function failoverState(f: Json): string {
  if (f.state === 'active') return `ACTIVE: serving ${f.primary}'s seats since ${fmtTime(f.since)}`;
  if (f.state === 'used-up') return "stopped: this month's failover hours are used up";
  if (f.reason === 'waiting') return `dormant: ${f.primary} offline since ${fmtTime(f.offlineSince)}, failover starts ${fmtTime(f.startsAt)}`;
  return `dormant (${f.reason === 'online' ? `${f.primary} is online` : f.reason === 'unseen' ? `${f.primary}'s state not seen` : (f.reason ?? '')})`;
}

function Overview(props: { server: Json | null; features: Json[]; alerts: Json[] }) {
  const s = props.server;
  const now = Date.now();
  return (
    <div>
      <section aria-labelledby="server-h" class="cards">
        <h2 id="server-h" class="sr">Server</h2>
        <div class="card">
          <div class="k">Server</div>
          <div class={`v state-${s?.state ?? 'unknown'}`} data-testid="server-state">
            {s?.state ?? 'waiting…'}
          </div>
          <div class="small">licd {s?.version ?? ''} since {fmtTime(s?.since)}</div>
        </div>
        <div class="card">
          <div class="k">Dongle</div>
          <div class="v">{s?.dongle ? (s.dongle.present ? 'present' : 'absent') : '–'}</div>
          <div class="small">
            {s?.dongle?.serial ?? ''}
            {s?.dongle?.emulated ? ' (emulated)' : ''}
            {s?.dongle?.reason ? ` ${s.dongle.reason}` : ''}
          </div>
        </div>
        <div class="card">
          <div class="k">License</div>
          <div class="v small">{s?.entitlement?.id ?? '–'}</div>
          <div class="small">{s?.entitlement?.customer ?? ''}</div>
        </div>
        {s?.failover && (
          <div class="card" data-testid="failover">
            <div class="k">Failover for {s.failover.primary}</div>
            <div class="v small">{failoverState(s.failover)}</div>
            <div class="small">
              {(s.failover.features ?? []).map((f: Json) => `${f.feature} x${f.seats}`).join(', ')}; used {s.failover.usedHours} of {s.failover.maxHoursPerMonth} h this month
            </div>
          </div>
        )}
        <div class="card">
          <div class="k">Clock</div>
          <div class="v small">{(s?.warnings ?? []).some((w: string) => /clock/i.test(w)) ? 'clock warning: see below' : 'no clock warning'}</div>
          <div class="small">last change on the server {fmtTime(lastChange(props.features))}; this browser {fmtTime(new Date(now).toISOString())}</div>
        </div>
      </section>
      {(s?.warnings?.length > 0 || props.alerts.length > 0) && (
        <section aria-labelledby="alerts-h" class="alerts">
          <h2 id="alerts-h">Alerts and warnings</h2>
          <ul>
            {(s?.warnings ?? []).map((w: string, i: number) => (
              <li key={`w${i}`} class="warn">
                {w}
              </li>
            ))}
            {props.alerts.map((a) => (
              <li key={a.id ?? a.kind} class={a.severity === 'critical' ? 'error' : 'warn'}>
                {a.message ?? a.summary}
              </li>
            ))}
          </ul>
        </section>
      )}
      <section aria-labelledby="features-h">
        <h2 id="features-h">Features</h2>
        <div class="scroll">
          <table class="features">
            <thead>
              <tr>
                <th scope="col">Feature</th>
                <th scope="col" class="wide">Product</th>
                <th scope="col">Seats</th>
                <th scope="col">Used</th>
                <th scope="col">Borrowed</th>
                <th scope="col" class="wide">Held</th>
                <th scope="col">Free</th>
                <th scope="col" class="wide">Queue</th>
                <th scope="col">Expires</th>
              </tr>
            </thead>
            <tbody>
              {props.features.map((f) => {
                const expired = typeof f.expires === 'string' && Date.parse(f.expires) <= now;
                const queue = Array.isArray(f.queue) ? f.queue.length : (f.queued ?? f.waiting ?? 0);
                return (
                  <tr key={f.feature} data-feature={f.feature}>
                    <th scope="row">
                      {f.feature}
                      <Bar f={f} />
                    </th>
                    <td class="wide">
                      {f.product ?? ''} {f.version ?? ''}
                    </td>
                    <td>{f.total}</td>
                    <td data-col="leased">{f.leased}</td>
                    <td data-col="borrowed">{f.borrowed}</td>
                    <td class="wide">{f.held ?? 0}</td>
                    <td data-col="free">{expired ? 0 : f.free}</td>
                    <td class="wide">{String(queue)}</td>
                    <td class={expired ? 'error' : ''}>{expired ? `expired ${fmtTime(f.expires)}` : fmtTime(f.expires)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        {props.features.length === 0 && <p>No feature is published yet.</p>}
      </section>
    </div>
  );
}

function Confirm(props: { text: string; yes: string; onYes: () => void; onNo: () => void }) {
  const ref = useRef<HTMLButtonElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <span class="confirm" role="group" aria-label={props.text}>
      <span>{props.text}</span>
      <button ref={ref} class="danger" onClick={props.onYes}>
        {props.yes}
      </button>
      <button class="secondary" onClick={props.onNo}>
        Cancel
      </button>
    </span>
  );
}

/** A row's action for an admin (revoke, mark lost): what its button and its confirmation say, and the op it sends. */
interface RowAction {
  label: string;
  aria: string;
  confirm: string;
  yes: string;
  op: string;
  fields: Json;
  done: string;
}

interface ItemColumn {
  head: string;
  value: (x: Json) => unknown;
  /** How the cell shows the value (default: as text). */
  show?: (v: unknown) => string;
}

/**
 * One table of the Leases and borrows tab (leases, borrows): the rows that match the filter, sortable
 * by any column (a click on its header; again for the other way), and for admins each row's action
 * behind a confirmation.
 */
function ItemTable(props: {
  id: string;
  title: string;
  noun: string;
  rows: Json[];
  columns: ItemColumn[];
  rowKey: string;
  filtered: boolean;
  admin: boolean;
  action: (x: Json) => RowAction | null;
  asking: string | null;
  setAsking: (k: string | null) => void;
  act: (op: string, fields: Json, done: string) => void;
  more: number;
  moreText: string;
}) {
  const [sort, setSort] = useState<{ col: number; dir: 1 | -1 } | null>(null);
  const rows = useMemo(() => {
    if (!sort) return props.rows;
    const c = props.columns[sort.col]!;
    return props.rows.slice().sort((a, b) => sort.dir * String(c.value(a) ?? '').localeCompare(String(c.value(b) ?? ''), undefined, { numeric: true }));
  }, [props.rows, sort]);
  return (
    <section aria-labelledby={`${props.id}-h`}>
      <h2 id={`${props.id}-h`}>
        {props.title} ({props.rows.length})
      </h2>
      <div class="scroll">
        <table class={props.id}>
          <thead>
            <tr>
              {props.columns.map((c, i) => (
                <th key={c.head} scope="col" aria-sort={sort?.col === i ? (sort.dir === 1 ? 'ascending' : 'descending') : undefined}>
                  <button class="sort" onClick={() => setSort(sort?.col === i ? { col: i, dir: sort.dir === 1 ? -1 : 1 } : { col: i, dir: 1 })}>
                    {c.head}
                    {sort?.col === i ? (sort.dir === 1 ? ' ▲' : ' ▼') : ''}
                  </button>
                </th>
              ))}
              {props.admin && <th scope="col">Action</th>}
            </tr>
          </thead>
          <tbody>
            {rows.map((x) => {
              const a = props.admin ? props.action(x) : null;
              const k = `${props.rowKey}:${x.id}`;
              return (
                <tr key={x.id} {...{ [`data-${props.rowKey}`]: x.id }}>
                  {props.columns.map((c) => (
                    <td key={c.head}>{c.show ? c.show(c.value(x)) : (c.value(x) as string)}</td>
                  ))}
                  {props.admin && (
                    <td>
                      {!a ? (
                        ''
                      ) : props.asking === k ? (
                        <Confirm text={a.confirm} yes={a.yes} onYes={() => props.act(a.op, a.fields, a.done)} onNo={() => props.setAsking(null)} />
                      ) : (
                        <button onClick={() => props.setAsking(k)} aria-label={a.aria}>
                          {a.label}
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {props.rows.length === 0 && (
        <p>
          No {props.noun}
          {props.filtered ? ' matches' : ''}.
        </p>
      )}
      {props.more > 0 && <p class="small">{props.moreText}</p>}
    </section>
  );
}

const LEASE_COLUMNS: ItemColumn[] = [
  { head: 'Feature', value: (l) => l.feature },
  { head: 'User', value: (l) => l.user },
  { head: 'Host', value: (l) => l.host },
  { head: 'Since', value: (l) => l.since, show: fmtTime },
  { head: 'Until', value: (l) => l.until, show: fmtTime },
  { head: 'State', value: (l) => l.state },
];

const BORROW_COLUMNS: ItemColumn[] = [
  { head: 'Feature', value: (b) => b.feature },
  { head: 'User', value: (b) => b.user },
  { head: 'Machine', value: (b) => b.hostName },
  { head: 'Since', value: (b) => b.since, show: fmtTime },
  { head: 'Until', value: (b) => b.until, show: fmtTime },
  { head: 'State', value: (b) => b.state },
];

function Leases(props: { status: Json | null; admin: boolean; link: Link; refresh: () => void }) {
  const [filter, setFilter] = useState('');
  const [feature, setFeature] = useState('');
  const [asking, setAsking] = useState<string | null>(null);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const features: Json[] = props.status?.features ?? [];
  const match = (x: Json) => (!feature || x.feature === feature) && (!filter || [x.user, x.host, x.hostName, x.feature, x.id].some((v) => typeof v === 'string' && v.toLowerCase().includes(filter.toLowerCase())));
  const leases = features.flatMap((f) => (f.leases ?? []) as Json[]).filter(match);
  const borrows = features.flatMap((f) => (f.borrows ?? []) as Json[]).filter(match);
  // licd lists at most 500 leases and borrows per feature in a status answer; the rest are counted.
  const moreLeases = features.reduce((n, f) => n + (Number(f.more?.leases) || 0), 0);
  const moreBorrows = features.reduce((n, f) => n + (Number(f.more?.borrows) || 0), 0);
  const act = async (op: string, fields: Json, done: string) => {
    setAsking(null);
    try {
      await props.link.request(op, fields, true);
      setMsg({ ok: true, text: done });
      props.refresh();
    } catch (e) {
      setMsg({ ok: false, text: errText(e) });
    }
  };
  const shared = { filtered: !!(filter || feature), admin: props.admin, asking, setAsking, act: (op: string, fields: Json, done: string) => void act(op, fields, done) };
  return (
    <div>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Filter <input type="search" name="filter" placeholder="user, host, feature" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Feature{' '}
          <select name="feature" value={feature} onChange={(e) => setFeature((e.target as HTMLSelectElement).value)}>
            <option value="">all</option>
            {features.map((f) => (
              <option key={f.feature} value={f.feature}>
                {f.feature}
              </option>
            ))}
          </select>
        </label>
      </form>
      {msg && (
        <p class={msg.ok ? 'ok' : 'error'} role="status">
          {msg.text}
        </p>
      )}
      <ItemTable
        {...shared}
        id="leases"
        title="Leases"
        noun="lease"
        rowKey="lease"
        rows={leases}
        columns={LEASE_COLUMNS}
        action={(l) => ({ label: 'Revoke', aria: `Revoke the lease of ${l.user} on ${l.host}`, confirm: `Revoke ${l.feature} of ${l.user}@${l.host}?`, yes: 'Yes, revoke', op: 'lease.revoke', fields: { lease: l.id }, done: `revoked the lease of ${l.user}@${l.host}` })}
        more={moreLeases}
        moreText={`${moreLeases} more leases are not listed (licd sends 500 per feature); licctl status FEATURE --limit N lists more.`}
      />
      <ItemTable
        {...shared}
        id="borrows"
        title="Borrows"
        noun="borrow"
        rowKey="borrow"
        rows={borrows}
        columns={BORROW_COLUMNS}
        action={(b) =>
          b.state === 'lost'
            ? null
            : { label: 'Mark lost', aria: `Mark the borrow of ${b.user} on ${b.hostName} lost`, confirm: `Mark the borrow of ${b.user} on ${b.hostName} lost? Its seat stays reserved until it ends.`, yes: 'Yes, mark lost', op: 'borrow.lost', fields: { borrow: b.id }, done: `marked the borrow of ${b.user} lost` }
        }
        more={moreBorrows}
        moreText={`${moreBorrows} more borrows are not listed (licd sends 500 per feature); licctl borrows lists them all.`}
      />
    </div>
  );
}

function Activation(props: { link: Link; server: Json | null }) {
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const request = async () => {
    setBusy(true);
    try {
      const r = await props.link.request('activation.request', {}, true);
      download(`activation-request-${r.dongle}.json`, JSON.stringify(r.request, null, 2) + '\n');
      setMsg({ ok: true, text: `activation request for dongle ${r.dongle} downloaded; give it to the vendor and upload the license file they answer with` });
    } catch (e) {
      setMsg({ ok: false, text: errText(e) });
    } finally {
      setBusy(false);
    }
  };
  const upload = async (file: File) => {
    setBusy(true);
    try {
      let license: unknown;
      try {
        license = JSON.parse(await file.text());
      } catch {
        throw new RequestError('ENTITLEMENT_INVALID', `${file.name} is not a license file (not JSON); give the file the vendor answered the activation request with`);
      }
      const r = await props.link.request('license.install', { license }, true);
      setMsg({
        ok: true,
        text: r.unchanged ? `license ${r.installed?.id} is already installed` : `installed license ${r.installed?.id}: added ${(r.added ?? []).join(', ') || 'none'}; removed ${(r.removed ?? []).join(', ') || 'none'}; changed ${(r.changed ?? []).join(', ') || 'none'}`,
      });
    } catch (e) {
      setMsg({ ok: false, text: errText(e) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="act-h">
      <h2 id="act-h">Activation</h2>
      <p>
        Installed: <strong>{props.server?.entitlement?.id ?? '–'}</strong> {props.server?.entitlement?.customer ?? ''}
      </p>
      <p>
        <button onClick={() => void request()} disabled={busy}>
          Download an activation request
        </button>
      </p>
      <p>
        <label>
          Upload a license file <input type="file" name="license" accept=".json,application/json" disabled={busy} onChange={(e) => {
            const f = (e.target as HTMLInputElement).files?.[0];
            if (f) void upload(f);
          }} />
        </label>
      </p>
      {msg && (
        <p class={msg.ok ? 'ok' : 'error'} role="status">
          {msg.text}
        </p>
      )}
    </section>
  );
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** The width an element is drawn at (charts are drawn in pixels, so their text stays readable on a phone). */
function useWidth(ref: { current: Element | null }, fallback: number): number {
  const [w, setW] = useState(fallback);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setW(Math.max(240, Math.floor(el.getBoundingClientRect().width))));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  return w;
}

/** A period's start as the chart says it: the hour (UTC), or the day. */
function periodLabel(t: number, every: number, long = false): string {
  const iso = new Date(t).toISOString();
  if (every >= DAY_MS) return long ? iso.slice(0, 10) : iso.slice(5, 10);
  return long ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : iso.slice(11, 13) === '00' ? iso.slice(5, 10) : iso.slice(11, 16);
}

interface Stack {
  key: string;
  label: string;
  values: Array<number | null>;
}

/**
 * Bars over time, stacked (one segment per stack), with an optional line (a step per period):
 * drawn in SVG at the width the page has. Each bar has a title (its numbers: a tooltip, and what
 * a screen reader reads); the chart has a title and a description, and a table of the numbers
 * follows it.
 */
function TimeChart(props: { id: string; title: string; desc: string; periods: number[]; every: number; stacks: Stack[]; line?: { label: string; values: Array<number | null> }; unit: string }) {
  const ref = useRef<HTMLDivElement>(null);
  const width = useWidth(ref, 640);
  const height = 190;
  const left = 34;
  const right = 8;
  const top = 10;
  const bottom = 24;
  const n = props.periods.length;
  const bw = (width - left - right) / Math.max(1, n);
  const totals = props.periods.map((_, i) => props.stacks.reduce((a, s) => a + (s.values[i] ?? 0), 0));
  const max = Math.max(1, ...totals, ...(props.line?.values ?? []).map((v) => v ?? 0));
  const y = (v: number) => top + (height - top - bottom) * (1 - v / max);
  const ticks = max <= 4 ? Array.from({ length: max + 1 }, (_, i) => i) : [0, Math.round(max / 2), max];
  const labelEvery = Math.max(1, Math.ceil(56 / bw));
  let line = '';
  if (props.line) {
    props.line.values.forEach((v, i) => {
      if (v === null) return;
      const x = left + i * bw;
      line += `${line === '' || props.line!.values[i - 1] === null ? 'M' : 'L'}${x.toFixed(1)} ${y(v).toFixed(1)}H${(x + bw).toFixed(1)}`;
    });
  }
  return (
    <div ref={ref} class="timechart">
      <svg class="chart" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-labelledby={`${props.id}-t ${props.id}-d`} data-chart={props.id}>
        <title id={`${props.id}-t`}>{props.title}</title>
        <desc id={`${props.id}-d`}>{props.desc}</desc>
        {ticks.map((v) => (
          <g key={v} class="tick">
            <line x1={left} x2={width - right} y1={y(v)} y2={y(v)} />
            <text x={left - 6} y={y(v) + 4} text-anchor="end">
              {v}
            </text>
          </g>
        ))}
        {props.periods.map((t, i) => {
          if (totals[i] === 0 && props.stacks.every((s) => s.values[i] === null)) return null;
          let base = 0;
          const parts = props.stacks.map((s) => `${s.label} ${s.values[i] ?? 0}`).join(', ');
          const lineText = props.line && props.line.values[i] !== null ? `, ${props.line.label} ${props.line.values[i]}` : '';
          return (
            <g key={t} class="bar" data-t={new Date(t).toISOString()} data-total={totals[i]}>
              <title>{`${periodLabel(t, props.every, true)}: ${parts}${lineText} ${props.unit}`}</title>
              {props.stacks.map((s, k) => {
                const v = s.values[i] ?? 0;
                if (v <= 0) return null;
                const r = <rect key={s.key} class={`s${k % 6}`} x={left + i * bw + bw * 0.1} width={Math.max(1, bw * 0.8)} y={y(base + v)} height={y(base) - y(base + v)} />;
                base += v;
                return r;
              })}
            </g>
          );
        })}
        {line && <path class="line" d={line} />}
        {props.periods.map((t, i) =>
          i % labelEvery === 0 ? (
            <text key={t} class="x" x={left + i * bw} y={height - 8}>
              {periodLabel(t, props.every)}
            </text>
          ) : null,
        )}
      </svg>
      <p class="legend small">
        {props.stacks.map((s, k) => (
          <span key={s.key}>
            <i class={`key s${k % 6}`} /> {s.label}{' '}
          </span>
        ))}
        {props.line && (
          <span>
            <i class="key line" /> {props.line.label}
          </span>
        )}
      </p>
    </div>
  );
}

/** Over time (report.series): per feature the seats held against the licensed count, and the denials by reason. */
function SeriesCharts(props: { link: Link; days: number }) {
  const [data, setData] = useState<{ rows: Json[]; from: number; to: number; every: number; more: number } | null>(null);
  const [err, setErr] = useState<string | null>(null);
  useEffect(() => {
    const every = props.days > 7 ? DAY_MS : HOUR_MS;
    const to = Math.floor(Date.now() / every) * every + every;
    const from = to - Math.ceil((props.days * DAY_MS) / every) * every;
    props.link.request('report.series', { from: new Date(from).toISOString(), to: new Date(to).toISOString(), by: every === DAY_MS ? 'day' : 'hour', limit: 100_000 }, true).then(
      (r) => {
        setData({ rows: r.rows ?? [], from, to, every, more: Number(r.more) || 0 });
        setErr(null);
      },
      (e) => setErr(errText(e)),
    );
  }, [props.days]);
  if (err)
    return (
      <p class="error" role="alert">
        {err}
      </p>
    );
  if (!data) return <p>Loading the history…</p>;
  const periods: number[] = [];
  for (let t = data.from; t < data.to; t += data.every) periods.push(t);
  const index = new Map(periods.map((t, i) => [t, i]));
  const features = [...new Set(data.rows.map((r) => String(r.feature)))].sort();
  const codes = [...new Set(data.rows.flatMap((r) => Object.keys(r.codes ?? {})))].sort();
  const denials: Stack[] = codes.map((c) => ({ key: c, label: c, values: periods.map(() => null) }));
  for (const r of data.rows) {
    const i = index.get(Date.parse(r.t));
    if (i === undefined) continue;
    for (const s of denials) if (r.codes?.[s.key]) s.values[i] = (s.values[i] ?? 0) + Number(r.codes[s.key]);
  }
  const what = data.every === DAY_MS ? 'day' : 'hour';
  return (
    <div>
      <h3>Seats in use over time</h3>
      {features.length === 0 && <p>No usage recorded in this period.</p>}
      {features.map((f) => {
        const peak: Array<number | null> = periods.map(() => null);
        const licensed: Array<number | null> = periods.map(() => null);
        for (const r of data.rows) {
          const i = index.get(Date.parse(r.t));
          if (r.feature !== f || i === undefined) continue;
          peak[i] = Number(r.peak) || 0;
          licensed[i] = Number(r.licensed) || 0;
        }
        return (
          <section key={f} aria-label={`${f} over time`} data-series={f}>
            <h4>{f}</h4>
            <TimeChart
              id={`use-${f}`}
              title={`${f}: seats in use per ${what} against the seats licensed`}
              desc={`Bars: the most seats held (leased and borrowed) at once in each ${what}; line: the seats licensed. The numbers are in the table below.`}
              periods={periods}
              every={data.every}
              stacks={[{ key: 'peak', label: 'peak seats in use', values: peak }]}
              line={{ label: 'licensed', values: licensed }}
              unit="seats"
            />
          </section>
        );
      })}
      <h3>Denials over time</h3>
      {codes.length === 0 ? (
        <p>No checkout or borrow was refused in this period.</p>
      ) : (
        <TimeChart
          id="denials"
          title={`Refused checkouts and borrows per ${what}, by reason`}
          desc={`Stacked bars: the refusals of all features in each ${what}, one colour per error code. The numbers are in the table below.`}
          periods={periods}
          every={data.every}
          stacks={denials}
          unit="refusals"
        />
      )}
      {data.rows.length > 0 && (
        <details>
          <summary>The numbers, per {what}</summary>
          <div class="scroll">
            <table class="series">
              <thead>
                <tr>
                  <th scope="col">{data.every === DAY_MS ? 'Day' : 'Hour (UTC)'}</th>
                  <th scope="col">Feature</th>
                  <th scope="col">Licensed</th>
                  <th scope="col">Peak</th>
                  <th scope="col">Average</th>
                  <th scope="col">Seat hours</th>
                  <th scope="col">Denials</th>
                </tr>
              </thead>
              <tbody>
                {data.rows.map((r) => (
                  <tr key={`${r.t}-${r.feature}`}>
                    <td>{periodLabel(Date.parse(r.t), data.every, true)}</td>
                    <td>{r.feature}</td>
                    <td>{r.licensed}</td>
                    <td>{r.peak}</td>
                    <td>{r.averageSeats}</td>
                    <td>{r.seatHours}</td>
                    <td>{Object.entries(r.codes ?? {}).map(([c, k]) => `${c} ${k}`).join(', ')}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </details>
      )}
      {data.more > 0 && <p class="small">{data.more} more rows are not shown: pick a shorter period.</p>}
    </div>
  );
}

/** Peak seats in use against the licensed count, per feature (report.usage), as an SVG bar chart. */
function History(props: { link: Link }) {
  const [rows, setRows] = useState<Json[] | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [days, setDays] = useState(30);
  useEffect(() => {
    const to = new Date();
    const from = new Date(to.getTime() - days * 86_400_000);
    props.link.request('report.usage', { from: from.toISOString(), to: to.toISOString() }, true).then(
      (r) => {
        setRows(r.rows ?? []);
        setErr(null);
      },
      (e) => setErr(errText(e)),
    );
  }, [days]);
  const max = Math.max(1, ...(rows ?? []).map((r) => Math.max(Number(r.licensed) || 0, Number(r.peak) || 0)));
  const rowH = 28;
  const width = 640;
  const left = 150;
  const scale = (n: number) => ((width - left - 40) * n) / max;
  return (
    <section aria-labelledby="hist-h">
      <h2 id="hist-h">Usage: peak against licensed</h2>
      <label>
        Period{' '}
        <select value={String(days)} onChange={(e) => setDays(Number((e.target as HTMLSelectElement).value))}>
          <option value="1">last day</option>
          <option value="7">last 7 days</option>
          <option value="30">last 30 days</option>
        </select>
      </label>
      {err && (
        <p class="error" role="alert">
          {err}
        </p>
      )}
      {rows && rows.length === 0 && <p>No usage recorded in this period.</p>}
      {rows && rows.length > 0 && (
        <svg class="chart" viewBox={`0 0 ${width} ${rows.length * rowH + 30}`} role="img" aria-labelledby="hist-t">
          <title id="hist-t">Peak seats in use and seats licensed per feature</title>
          {rows.map((r, i) => (
            <g key={r.feature} transform={`translate(0 ${i * rowH + 4})`} data-feature={r.feature}>
              <text x={left - 8} y={16} text-anchor="end">
                {r.feature}
              </text>
              <rect class="licensed" x={left} y={2} height={18} width={scale(Number(r.licensed) || 0)} />
              <rect class="peak" x={left} y={6} height={10} width={scale(Number(r.peak) || 0)} />
              <text x={left + scale(Math.max(Number(r.licensed) || 0, Number(r.peak) || 0)) + 6} y={16}>
                {`${r.peak} / ${r.licensed}`}
              </text>
            </g>
          ))}
        </svg>
      )}
      {rows && rows.length > 0 && (
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Feature</th>
                <th scope="col">Licensed</th>
                <th scope="col">Peak</th>
                <th scope="col">Seat hours</th>
                <th scope="col">At limit</th>
                <th scope="col">Denials</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.feature}>
                  <td>{r.feature}</td>
                  <td>{r.licensed}</td>
                  <td>{r.peak}</td>
                  <td>{typeof r.seatHours === 'number' ? r.seatHours.toFixed(1) : ''}</td>
                  <td>{typeof r.atLimitPercent === 'number' ? `${r.atLimitPercent.toFixed(0)} %` : ''}</td>
                  <td>{r.denials}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <SeriesCharts link={props.link} days={days} />
    </section>
  );
}

/**
 * The borrow wizard in V-Ray's four steps: products, machines (how many run at once on the
 * borrowing machine), preview by license type (borrow.preview: what this user may borrow now and
 * for how long), summary. A borrow is signed by the borrowing machine's own key, which a browser
 * does not have: the wizard ends in a request file to download, the licctl commands that make and
 * bring back the signed request on that machine.
 */
function BorrowWizard(props: { link: Link; status: Json | null; user: string | null }) {
  const [step, setStep] = useState(1);
  const [chosen, setChosen] = useState<Record<string, number>>({});
  const [preview, setPreview] = useState<Json | null>(null);
  const [hours, setHours] = useState(72);
  const [who, setWho] = useState(props.user && props.user !== 'admin' ? props.user : '');
  const [err, setErr] = useState<string | null>(null);
  const products: Json[] = props.status?.products ?? [];
  const typeOf = (feature: string): string => (props.status?.features ?? []).find((f: Json) => f.feature === feature)?.type ?? '';
  const borrowable = (p: Json) => (p.licenses ?? []).every((l: Json) => (props.status?.features ?? []).find((f: Json) => f.feature === l.feature)?.borrow?.allowed);
  const picked = Object.entries(chosen).filter(([, n]) => n > 0);
  const maxHours = preview ? Math.min(...(preview.items ?? []).map((i: Json) => Number(i.maxHours) || 0)) : 0;
  const over = preview ? (preview.items ?? []).filter((i: Json) => Number(i.machines) > Number(i.maxSeats)) : [];
  const ask = async () => {
    setErr(null);
    try {
      const r = await props.link.request('borrow.preview', { products: picked.map(([product, machines]) => ({ product, machines })), ...(who ? { user: who } : {}) });
      setPreview(r);
      setHours((h) => Math.max(1, Math.min(h, Math.min(...(r.items ?? []).map((i: Json) => Number(i.maxHours) || 1)))));
      setStep(3);
    } catch (e) {
      setErr(errText(e));
    }
  };
  const requestText = () => {
    const features = (preview?.items ?? []).map((i: Json) => `--feature ${i.feature}=${i.machines}`).join(' ');
    const prods = picked.map(([p, n]) => `--product ${p}=${n}`).join(' ');
    return [
      `# licd borrow request made on the web page of ${location.host} at ${new Date().toISOString()}`,
      `# ${picked.map(([p, n]) => `${products.find((x) => x.id === p)?.name ?? p} x${n}`).join(', ')} for ${hours} h${who ? `, for ${who}` : ''}`,
      '# A borrow is bound to the machine and the user that will use it, and signed with that',
      "# machine's own key: run these there, as that user (docs/borrowing.md).",
      '#',
      '# The machine reaches licd now:',
      `licctl borrow ${prods} --hours ${hours} --yes`,
      '#',
      '# Or air-gapped: make the signed request there, have an admin answer it, import the tokens:',
      `licctl borrow request ${features} --hours ${hours} --out req.json`,
      'licctl borrow --request req.json --out tokens.json    # an admin, on a machine that reaches licd',
      'licctl borrow import tokens.json',
      '',
    ].join('\n');
  };
  const steps = ['Products', 'Machines', 'Preview', 'Summary'];
  return (
    <section aria-labelledby="wiz-h" class="wizard">
      <h2 id="wiz-h">Borrow licenses for offline use</h2>
      <ol class="steps" aria-label="Steps">
        {steps.map((name, i) => (
          <li key={name} aria-current={step === i + 1 ? 'step' : undefined} class={step === i + 1 ? 'current' : ''}>
            {i + 1}. {name}
          </li>
        ))}
      </ol>
      {err && (
        <p class="error" role="alert">
          {err}
        </p>
      )}
      {step === 1 && (
        <fieldset>
          <legend>Which products will run on the borrowing machine?</legend>
          {products.length === 0 && <p>The license lists no products.</p>}
          {products.map((p) => (
            <label key={p.id} class="block">
              <input
                type="checkbox"
                name="product"
                value={p.id}
                disabled={!borrowable(p)}
                checked={(chosen[p.id] ?? 0) > 0}
                onChange={(e) => setChosen((c) => ({ ...c, [p.id]: (e.target as HTMLInputElement).checked ? Math.max(1, c[p.id] ?? 1) : 0 }))}
              />
              {p.name} <span class="small">({(p.licenses ?? []).map((l: Json) => `${l.count} ${l.feature}`).join(' + ')}{borrowable(p) ? '' : '; not borrowable'})</span>
            </label>
          ))}
          <div class="nav">
            <button type="button" disabled={picked.length === 0} onClick={() => setStep(2)}>
              Next
            </button>
          </div>
        </fieldset>
      )}
      {step === 2 && (
        <fieldset>
          <legend>How many of each run at once on that machine?</legend>
          {picked.map(([id, n]) => (
            <label key={id} class="block">
              {products.find((p) => p.id === id)?.name ?? id}{' '}
              <input type="number" name={`machines-${id}`} min={1} max={999} value={n} onInput={(e) => setChosen((c) => ({ ...c, [id]: Math.max(0, Math.floor(Number((e.target as HTMLInputElement).value) || 0)) }))} />
            </label>
          ))}
          <label class="block">
            For user <input name="user" value={who} placeholder="the user who borrows (their limits apply)" onInput={(e) => setWho((e.target as HTMLInputElement).value.trim())} />
          </label>
          <div class="nav">
            <button type="button" class="secondary" onClick={() => setStep(1)}>
              Back
            </button>
            <button type="button" disabled={picked.length === 0} onClick={() => void ask()}>
              Preview
            </button>
          </div>
        </fieldset>
      )}
      {step === 3 && preview && (
        <div>
          <div class="scroll">
            <table class="preview">
              <caption>Licenses needed, by type</caption>
              <thead>
                <tr>
                  <th scope="col">License</th>
                  <th scope="col">Type</th>
                  <th scope="col">To borrow</th>
                  <th scope="col">You may borrow now</th>
                  <th scope="col">Most hours</th>
                </tr>
              </thead>
              <tbody>
                {(preview.items ?? []).map((i: Json) => (
                  <tr key={i.feature} data-feature={i.feature} class={Number(i.machines) > Number(i.maxSeats) ? 'error' : ''}>
                    <td>{i.feature}</td>
                    <td>{String(i.type ?? typeOf(i.feature)).toUpperCase()}</td>
                    <td data-col="machines">{i.machines}</td>
                    <td>
                      {i.maxSeats} <span class="small">({i.seatsWhy})</span>
                    </td>
                    <td>
                      {i.maxHours} <span class="small">({i.hoursWhy})</span>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {over.length > 0 && (
            <p class="error" role="alert">
              {over.map((i: Json) => `${i.feature}: ${i.machines} needed, but you may borrow ${i.maxSeats} now (${i.seatsWhy})`).join('; ')}: go back and lower the count.
            </p>
          )}
          <label class="block">
            Hours (1 to {maxHours}){' '}
            <input type="number" name="hours" min={1} max={maxHours} value={hours} onInput={(e) => setHours(Math.floor(Number((e.target as HTMLInputElement).value) || 0))} />
          </label>
          <div class="nav">
            <button type="button" class="secondary" onClick={() => setStep(2)}>
              Back
            </button>
            <button type="button" disabled={over.length > 0 || hours < 1 || hours > maxHours} onClick={() => setStep(4)}>
              Next
            </button>
          </div>
        </div>
      )}
      {step === 4 && preview && (
        <div>
          <ul class="summary">
            {picked.map(([id, n]) => (
              <li key={id}>
                {products.find((p) => p.id === id)?.name ?? id} x{n}: until {fmtTime(new Date(Date.now() + hours * 3_600_000).toISOString())}
              </li>
            ))}
          </ul>
          <p class="small">A borrow is signed by the borrowing machine's own key, so it is made there: the request file holds the licctl commands to run on that machine, as the user who will use the licenses.</p>
          <div class="nav">
            <button type="button" class="secondary" onClick={() => setStep(3)}>
              Back
            </button>
            <button type="button" onClick={() => download(`borrow-request-${new Date().toISOString().slice(0, 10)}.txt`, requestText())}>
              Download the request file
            </button>
          </div>
        </div>
      )}
    </section>
  );
}

/** The audit log (docs/audit.md): its head and last seal, the newest records, and the export that licctl audit verify checks offline. */
/** Every record of the audit log and the certificates its seals name, page by page (audit.export). */
async function fetchAudit(link: Link): Promise<{ records: Json[]; certs: Map<string, unknown>; head: Json | null }> {
  const records: Json[] = [];
  const certs = new Map<string, unknown>();
  let ask: Json = {};
  let last: Json | null = null;
  for (;;) {
    const page = await link.request('audit.export', ask, true);
    last = page;
    for (const r of page.records ?? []) records.push(r);
    for (const [ref, env] of Object.entries(page.certs ?? {})) certs.set(ref, env);
    if (page.next === null || page.next === undefined) break;
    ask = { from: page.next };
  }
  return { records, certs, head: last?.head ?? null };
}

const VENDOR_KEY_STORE = 'licd.vendorKey';

/** The verdict of verifyAudit in a sentence (as licctl audit verify says it). */
function verdictText(v: AuditVerdict, records: readonly unknown[], what: string, key: Uint8Array): { ok: boolean; text: string } {
  const against = ` (against vendor key ${Array.from(key.slice(0, 8), (b) => b.toString(16).padStart(2, '0')).join('')}…)`;
  const sealAt = (seq: number | null) => fmtTime((records.find((r) => (r as Json)?.seq === seq) as Json | undefined)?.at);
  if (!v.ok) {
    const p = v.problem!;
    return { ok: false, text: `${what} is BROKEN at record ${p.seq}: ${p.reason}: ${p.message}${v.sealedThrough !== null ? ` (records before it are sealed through ${v.sealedThrough})` : ''}${against}` };
  }
  if (v.records === 0) return { ok: true, text: `${what}: no records` };
  const keys = v.keys.map((k) => `dongle ${k.dongle}${k.emulated ? ' (EMULATED: development material)' : ''}`).join(', ');
  return {
    ok: true,
    text:
      (v.sealedThrough !== null ? `${what} verified up to record ${v.sealedThrough}, sealed at ${sealAt(v.sealedThrough)} by ${keys}` : `${what}: records ${v.first} to ${v.last} chain, but none is sealed yet (not proven)`) +
      (v.voided.length > 0 ? `; voided (their write failed): ${v.voided.map((x) => (x.from === x.to ? `${x.from}` : `${x.from}-${x.to}`)).join(', ')}` : '') +
      (v.unsealed && v.sealedThrough !== null ? `; records ${v.unsealed.from} to ${v.unsealed.to} are not yet sealed (not proven)` : '') +
      against,
  };
}

function Audit(props: { link: Link }) {
  const [head, setHead] = useState<Json | null>(null);
  const [records, setRecords] = useState<Json[]>([]);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [verdict, setVerdict] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const [vendorKey, setVendorKey] = useState(() => localStorage.getItem(VENDOR_KEY_STORE) ?? '');
  const load = async () => {
    try {
      const h = await props.link.request('audit.head', {}, true);
      setHead(h);
      const seq = Number(h.head?.seq) || 0;
      const page = await props.link.request('audit.export', { from: Math.max(1, seq - 49), limit: 50 }, true);
      setRecords(((page.records ?? []) as Json[]).slice().reverse());
    } catch (e) {
      setMsg({ ok: false, text: errText(e) });
    }
  };
  useEffect(() => void load(), []);
  const exportAll = async () => {
    setBusy(true);
    try {
      const all = await fetchAudit(props.link);
      const lines = all.records.map((r) => JSON.stringify(r));
      const header = { format: 'licd-audit-export/1', server: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mqtt`, exportedAt: new Date().toISOString(), head: all.head };
      const body = [JSON.stringify(header), ...lines, ...[...all.certs].map(([cert, envelope]) => JSON.stringify({ cert, envelope }))].join('\n') + '\n';
      download(`licd-audit-${new Date().toISOString().slice(0, 10)}.jsonl`, body);
      setMsg({ ok: true, text: `exported ${lines.length} records; check them offline with licctl audit verify FILE --vendor-key KEY` });
    } catch (e) {
      setMsg({ ok: false, text: errText(e) });
    } finally {
      setBusy(false);
    }
  };
  /** Verifies in this browser, with the vendor key the admin gave (never one the box sends). */
  const verify = async (source: () => Promise<{ records: readonly unknown[]; certs: ReadonlyMap<string, unknown>; from?: number; what: string }>) => {
    const key = vendorKeyOf(vendorKey);
    if (!key) {
      setVerdict({ ok: false, text: 'give the vendor public key first: 64 hex digits (licctl vendor keygen prints it), or its file' });
      return;
    }
    setBusy(true);
    setVerdict({ ok: true, text: 'verifying…' });
    try {
      const cannot = await canVerify();
      if (cannot) throw new Error(cannot);
      const x = await source();
      const v = await verifyInBrowser({ records: x.records, certs: x.certs, vendorPublicKey: key, ...(x.from !== undefined ? { from: x.from } : {}) });
      setVerdict(verdictText(v, x.records, x.what, key));
    } catch (e) {
      setVerdict({ ok: false, text: errText(e) });
    } finally {
      setBusy(false);
    }
  };
  const setKey = (text: string) => {
    setVendorKey(text);
    const k = vendorKeyOf(text);
    // Only the public key is kept (a key file may hold the vendor's secret too: it is not stored).
    if (k) {
      const hex = Array.from(k, (b) => b.toString(16).padStart(2, '0')).join('');
      localStorage.setItem(VENDOR_KEY_STORE, hex);
      if (text.trim() !== hex) setVendorKey(hex);
    }
  };
  const what = (r: Json): string => {
    const skip = new Set(['seq', 'at', 'kind', 'prev', 'hash', 'sig', 'sessionKey', 'delegation', 'entitlement']);
    return Object.entries(r)
      .filter(([k, v]) => !skip.has(k) && v !== null && typeof v !== 'object')
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ');
  };
  return (
    <section aria-labelledby="audit-h">
      <h2 id="audit-h">Audit log</h2>
      {head && (
        <p data-testid="audit-head">
          {head.head?.seq ?? 0} records; last seal at record {head.sealed?.seq ?? 'none'} ({fmtTime(head.sealed?.at)}); {head.unsealed ?? 0} not sealed yet
        </p>
      )}
      <p>
        <button onClick={() => void exportAll()} disabled={busy}>
          Download the export
        </button>{' '}
        <button class="secondary" onClick={() => void load()}>
          Refresh
        </button>
      </p>
      {msg && (
        <p class={msg.ok ? 'ok' : 'error'} role="status">
          {msg.text}
        </p>
      )}
      <fieldset class="verify">
        <legend>Verify in this browser</legend>
        <p class="small">
          Checks every record against its hash and link and every seal through its delegation and license up to the vendor key, here, with the browser's WebCrypto (as licctl audit verify does). The vendor key is yours to give: the box
          being checked does not supply it.
        </p>
        <label class="block column">
          Vendor public key
          <input name="vendorKey" spellcheck={false} autocomplete="off" placeholder="64 hex digits" value={vendorKey} onInput={(e) => setKey((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          or its file{' '}
          <input type="file" name="vendorKeyFile" onChange={(e) => {
            const f = (e.target as HTMLInputElement).files?.[0];
            if (f) void f.text().then((t) => (vendorKeyOf(t) ? setKey(t) : setVerdict({ ok: false, text: `${f.name} holds no vendor public key (64 hex digits, or JSON with "publicKey")` })));
          }} />
        </label>
        <p>
          <button disabled={busy} onClick={() => void verify(async () => ({ ...(await fetchAudit(props.link)), what: 'the audit log' }))}>
            Verify the log
          </button>{' '}
          <label>
            Verify an export file{' '}
            <input type="file" name="auditFile" accept=".jsonl,.json,application/json" disabled={busy} onChange={(e) => {
              const f = (e.target as HTMLInputElement).files?.[0];
              if (f)
                void verify(async () => {
                  const x = parseAuditExport(await f.text());
                  if (x.header === null && x.records.length === 0) throw new Error(`${f.name} is not an audit export (no licd-audit-export/1 header, no records)`);
                  const from = exportStart(x);
                  return { records: x.records, certs: x.certs, ...(from !== undefined ? { from } : {}), what: f.name };
                });
            }} />
          </label>
        </p>
        {verdict && (
          <p class={verdict.ok ? 'ok' : 'error'} role="status" data-testid="audit-verdict">
            {verdict.text}
          </p>
        )}
      </fieldset>
      <div class="scroll">
        <table class="audit">
          <caption>The newest records</caption>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Time</th>
              <th scope="col">Event</th>
              <th scope="col">Details</th>
            </tr>
          </thead>
          <tbody>
            {records.map((r) => (
              <tr key={r.seq} data-seq={r.seq}>
                <td>{r.seq}</td>
                <td>{fmtTime(r.at)}</td>
                <td>{r.kind}</td>
                <td class="small">{what(r)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

/** Settings that are safe to change live: the borrow limits (docs/borrowing.md), as licctl borrow limits --set. */
function Settings(props: { link: Link }) {
  const [text, setText] = useState('');
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  // The editor stays disabled until the limits in force have arrived: an answer landing after the
  // admin began typing would otherwise replace what they typed. If they cannot be read, it stays so.
  const [loaded, setLoaded] = useState(false);
  useEffect(() => {
    props.link.request('limits.get', {}, true).then(
      (r) => {
        setText(JSON.stringify(r.limits ?? {}, null, 2));
        setLoaded(true);
      },
      (e) => setMsg({ ok: false, text: errText(e) }),
    );
  }, []);
  const save = async () => {
    let limits: unknown;
    try {
      limits = JSON.parse(text);
    } catch (e) {
      setMsg({ ok: false, text: `the limits are not JSON: ${(e as Error).message}` });
      return;
    }
    try {
      const r = await props.link.request('limits.set', { limits }, true);
      setText(JSON.stringify(r.limits ?? {}, null, 2));
      setMsg({ ok: true, text: 'the borrow limits are saved and in force for new borrows' });
    } catch (e) {
      setMsg({ ok: false, text: errText(e) });
    }
  };
  return (
    <section aria-labelledby="set-h">
      <h2 id="set-h">Borrow limits</h2>
      <p class="small">
        Per feature, user and group: most seats borrowed at once and most hours, e.g. {'{"features":{"vray_render":{"maxSeats":2,"maxHours":48}},"users":{"alice":{"maxSeats":1}}}'}. In force at once for new borrows; borrows already out stay.
      </p>
      <label class="block column">
        Limits (JSON)
        <textarea name="limits" rows={10} spellcheck={false} disabled={!loaded} value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />
      </label>
      <button disabled={!loaded} onClick={() => void save()}>
        Save the limits
      </button>
      {msg && (
        <p class={msg.ok ? 'ok' : 'error'} role="status">
          {msg.text}
        </p>
      )}
    </section>
  );
}

function App() {
  const [link, setLink] = useState<Link | null>(null);
  const [who, setWho] = useState<Who | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [conn, setConn] = useState<string>('signed out');
  const [server, setServer] = useState<Json | null>(null);
  const [features, setFeatures] = useState<Record<string, Json>>({});
  const [alerts, setAlerts] = useState<Json[]>([]);
  const [status, setStatus] = useState<Json | null>(null);
  const [tab, setTab] = useState<Tab>('overview');
  const refreshTimer = useRef<number | null>(null);

  // The status answer (leases, borrows) is asked again after each change a retained topic shows.
  const refresh = (l: Link | null = link) => {
    if (!l) return;
    if (refreshTimer.current !== null) clearTimeout(refreshTimer.current);
    refreshTimer.current = window.setTimeout(() => {
      refreshTimer.current = null;
      l.request('status', {}).then(setStatus, (e) => setError(errText(e)));
    }, 150);
  };

  const signIn = async (user: string | null, password: string | null) => {
    setBusy(true);
    setError(null);
    link?.close();
    const l = new Link();
    l.onState = (s) => setConn(s === 'connected' ? 'live' : s === 'reconnecting' ? 'reconnecting…' : 'disconnected');
    l.onMessage = (topic, text) => {
      let v: Json | null = null;
      try {
        v = text === '' ? null : (JSON.parse(text) as Json);
      } catch {
        return;
      }
      if (topic === `${PREFIX}/server/state`) setServer(v);
      else if (topic === `${PREFIX}/alerts`) setAlerts(Array.isArray(v?.alerts) ? v!.alerts : []);
      else if (topic.startsWith(`${PREFIX}/feature/`)) {
        const name = topic.slice(`${PREFIX}/feature/`.length);
        setFeatures((old) => {
          const next = { ...old };
          if (v) next[name] = v;
          else delete next[name];
          return next;
        });
        refresh(l);
      }
    };
    try {
      await l.connect(user, password);
      setLink(l);
      setWho({ user, admin: user === 'admin' });
      setConn('live');
      refresh(l);
    } catch (e) {
      l.close();
      setError(errText(e));
    } finally {
      setBusy(false);
    }
  };

  const signOut = () => {
    link?.close();
    setLink(null);
    setWho(null);
    setServer(null);
    setFeatures({});
    setAlerts([]);
    setStatus(null);
    setConn('signed out');
    setTab('overview');
  };

  const list = useMemo(() => Object.values(features).sort((a, b) => String(a.feature).localeCompare(String(b.feature))), [features]);
  const tabs: Array<[Tab, string]> = [
    ['overview', 'Overview'],
    ['leases', 'Leases and borrows'],
    ['borrow', 'Borrow'],
    ...(who?.admin ? ([['activation', 'Activation'], ['history', 'History'], ['audit', 'Audit'], ['settings', 'Settings']] as Array<[Tab, string]>) : []),
  ];

  return (
    <div class="page">
      <header>
        <h1>licd</h1>
        <span class="conn" aria-live="polite" data-testid="conn">
          {conn}
        </span>
        {who && (
          <span class="who">
            {who.user ? `signed in as ${who.user}` : 'viewing'}{' '}
            <button class="secondary" onClick={signOut}>
              Sign out
            </button>
          </span>
        )}
      </header>
      {!who && <SignIn onSignIn={signIn} busy={busy} error={error} />}
      {who && link && (
        <main>
          <nav role="tablist" aria-label="Sections">
            {tabs.map(([id, label]) => (
              <button key={id} role="tab" id={`tab-${id}`} aria-selected={tab === id} aria-controls="panel" onClick={() => setTab(id)}>
                {label}
              </button>
            ))}
          </nav>
          {error && (
            <p class="error" role="alert">
              {error}
            </p>
          )}
          <div id="panel" role="tabpanel" aria-labelledby={`tab-${tab}`}>
            {tab === 'overview' && <Overview server={server} features={list} alerts={alerts} />}
            {tab === 'leases' && <Leases status={status} admin={who.admin} link={link} refresh={() => refresh()} />}
            {tab === 'borrow' && <BorrowWizard link={link} status={status} user={who.user} />}
            {tab === 'activation' && <Activation link={link} server={server} />}
            {tab === 'history' && <History link={link} />}
            {tab === 'audit' && <Audit link={link} />}
            {tab === 'settings' && <Settings link={link} />}
          </div>
        </main>
      )}
    </div>
  );
}

render(<App />, document.getElementById('app')!);
