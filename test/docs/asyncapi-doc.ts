/**
 * docs/asyncapi.yaml loaded for tests: the parsed document, its local $refs, and a small checker
 * of payloads against its schemas (the subset of JSON Schema the document uses).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// js-yaml has no bundled types; this is the part of its API (3.x and 4.x alike) used here.
const yaml = createRequire(import.meta.url)('js-yaml') as { load(text: string, opts: { schema: unknown; filename: string }): unknown; JSON_SCHEMA: unknown };

export type Node = Record<string, unknown>;

export const doc = yaml.load(readFileSync(new URL('../../docs/asyncapi.yaml', import.meta.url), 'utf8'), { schema: yaml.JSON_SCHEMA, filename: 'docs/asyncapi.yaml' }) as Node;

export function obj(v: unknown, where: string): Node {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${where} is not an object in docs/asyncapi.yaml`);
  return v as Node;
}

/** Resolves a local $ref ('#/a/b') in the document; throws naming the ref if it points nowhere. */
export function resolve(ref: string): unknown {
  if (!ref.startsWith('#/')) throw new Error(`$ref ${ref} is not local`);
  let at: unknown = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (typeof at !== 'object' || at === null || !(key in at)) throw new Error(`$ref ${ref} points nowhere (no ${JSON.stringify(key)})`);
    at = (at as Node)[key];
  }
  return at;
}

/** Follows $refs until a node that is not one. */
export function deref(v: unknown, where: string): Node {
  let n = obj(v, where);
  for (let i = 0; typeof n.$ref === 'string'; i++) {
    if (i > 20) throw new Error(`${where}: $ref loop`);
    n = obj(resolve(n.$ref), n.$ref);
  }
  return n;
}

const typeOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v);

/**
 * The ways `value` breaks `schema` (empty: it fits). Knows what the document uses: $ref, allOf,
 * oneOf, type, const, enum, required, properties, additionalProperties, items, maxItems, minimum,
 * maximum, minLength, maxLength, pattern, format date-time. Stricter than JSON Schema in one way:
 * an object schema that lists properties (itself or through allOf) is closed unless it says
 * additionalProperties, so a field the daemon sends and the document does not describe is found.
 */
export function check(schema: unknown, value: unknown, at = '$', part = false): string[] {
  const s = deref(schema, at);
  const errs: string[] = [];
  for (const sub of (s.allOf as unknown[] | undefined) ?? []) errs.push(...check(sub, value, at, true));
  if (s.oneOf) {
    const fits = (s.oneOf as unknown[]).filter((sub) => check(sub, value, at).length === 0).length;
    if (fits !== 1) errs.push(`${at}: fits ${fits} of the oneOf schemas, not 1: ${JSON.stringify(value)}`);
  }
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
    const t = typeOf(value);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) return [...errs, `${at}: is ${t}, the document says ${types.join(' or ')}`];
  }
  if ('const' in s && JSON.stringify(s.const) !== JSON.stringify(value)) errs.push(`${at}: is ${JSON.stringify(value)}, the document says ${JSON.stringify(s.const)}`);
  if (s.enum && !(s.enum as unknown[]).includes(value)) errs.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(s.enum)}`);
  if (typeof value === 'string') {
    if (typeof s.minLength === 'number' && value.length < s.minLength) errs.push(`${at}: shorter than ${s.minLength}`);
    if (typeof s.maxLength === 'number' && value.length > s.maxLength) errs.push(`${at}: longer than ${s.maxLength}`);
    if (typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(value)) errs.push(`${at}: ${JSON.stringify(value)} does not match ${s.pattern}`);
    if (s.format === 'date-time' && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(value)) errs.push(`${at}: ${JSON.stringify(value)} is not an ISO 8601 UTC time`);
  }
  if (typeof value === 'number') {
    if (typeof s.minimum === 'number' && value < s.minimum) errs.push(`${at}: below ${s.minimum}`);
    if (typeof s.maximum === 'number' && value > s.maximum) errs.push(`${at}: above ${s.maximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof s.maxItems === 'number' && value.length > s.maxItems) errs.push(`${at}: more than ${s.maxItems} items`);
    if (s.items !== undefined) value.forEach((x, i) => errs.push(...check(s.items, x, `${at}[${i}]`)));
  }
  if (typeOf(value) === 'object') {
    const o = value as Node;
    const props = (s.properties as Node | undefined) ?? {};
    for (const r of (s.required as string[] | undefined) ?? []) if (!(r in o)) errs.push(`${at}: lacks ${r}`);
    for (const [k, v] of Object.entries(o)) {
      if (k in props) errs.push(...check(props[k], v, `${at}.${k}`));
      else if (typeof s.additionalProperties === 'object') errs.push(...check(s.additionalProperties, v, `${at}.${k}`));
      else if (!part && s.additionalProperties !== true && listed(s) && !listed(s)!.has(k)) errs.push(`${at}: has ${k}, which the document does not list`);
    }
  }
  return errs;
}

/** The property names an object schema lists, itself and through allOf; null if it lists none. */
function listed(s: Node): Set<string> | null {
  const names = new Set<string>(Object.keys((s.properties as Node | undefined) ?? {}));
  let any = s.properties !== undefined;
  for (const sub of (s.allOf as unknown[] | undefined) ?? []) {
    const more = listed(deref(sub, 'allOf'));
    if (more) {
      any = true;
      for (const n of more) names.add(n);
    }
  }
  return any ? names : null;
}
