/**
 * The vendor's license specs for activation (docs/activation.md, "Specs"): which features a dongle
 * gets. One FILE is either a spec ({customer, features}) given to every dongle, or
 * {"default": spec, "dongles": {"SERIAL": spec}}; a DIRECTORY holds SERIAL.json files and an
 * optional default.json.
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { LicdError } from '../core/errors.ts';
import { parseActivationSpec, type ActivationSpec } from '../core/activation.ts';
import { fsErrorText, readJsonFile } from '../files.ts';

export interface SpecSet {
  bySerial: Map<string, ActivationSpec>;
  fallback: ActivationSpec | null;
}

export function loadSpecs(path: string): SpecSet {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw new LicdError('CONFIG_INVALID', `the license specs (--specs): ${fsErrorText(e, path)}; give a spec file or a directory of SERIAL.json files`, { file: path });
  }
  const set: SpecSet = { bySerial: new Map(), fallback: null };
  const fix = { fix: 'give a JSON spec with customer and features (docs/activation.md)' };
  if (isDir) {
    for (const name of readdirSync(path).filter((n) => n.endsWith('.json')).sort()) {
      const file = join(path, name);
      const spec = parseActivationSpec(readJsonFile(file, `the license spec ${file}`, fix), basename(file));
      if (name === 'default.json') set.fallback = spec;
      else set.bySerial.set(name.slice(0, -'.json'.length), spec);
    }
    return set;
  }
  const json = readJsonFile(path, `the license spec ${path}`, fix);
  const o = json as Record<string, unknown> | null;
  if (o && typeof o === 'object' && ('dongles' in o || 'default' in o)) {
    if (o.default !== undefined && o.default !== null) set.fallback = parseActivationSpec(o.default, `${path}: default`);
    const dongles = o.dongles ?? {};
    if (typeof dongles !== 'object' || dongles === null || Array.isArray(dongles)) {
      throw new LicdError('CONFIG_INVALID', `${path}: dongles must be an object of dongle serial to spec`, { file: path });
    }
    for (const [serial, spec] of Object.entries(dongles)) set.bySerial.set(serial, parseActivationSpec(spec, `${path}: dongles.${serial}`));
    return set;
  }
  set.fallback = parseActivationSpec(json, path);
  return set;
}
