/** licctl policy show|check|set: the sharing policy (docs/policy.md). */
import { LicdError } from '../../core/errors.ts';
import { parsePolicy } from '../../core/policy.ts';
import type { PolicyInfo } from '../../core/sharing.ts';
import { readTextFile } from '../../files.ts';
import type { ParsedArgs } from '../args.ts';
import type { Command } from '../command.ts';
import { adminRequest, cell, json, out, outJson } from '../context.ts';

function readPolicyFile(file: string): string {
  return readTextFile(file, 'the policy file', { code: 'POLICY_INVALID', fix: 'give the path of a policy file (docs/policy.md shows the format)' });
}

function summary(p: { rules: number; features: string[] }): string {
  return p.rules === 0 ? 'no rules: seats go first come, first served' : `${p.rules} rule line(s) for ${p.features.length === 0 ? 'no feature (groups only)' : p.features.map(cell).join(', ')}`;
}

async function show(a: ParsedArgs): Promise<number> {
  const r = await adminRequest<PolicyInfo>(a, 'policy.get', {});
  if (json(a)) outJson(r);
  else {
    out(`policy from ${cell(r.file)}: ${summary(r)}`);
    // Numbered, as refusals name lines ("policy line 12").
    if (r.text.length > 0) r.text.replace(/\r?\n$/, '').split(/\r?\n/).forEach((line, i) => out(`${String(i + 1).padStart(4)}  ${cell(line)}`));
  }
  return 0;
}

/** Checks a file here, without a server: the same parser licd uses, so what passes here is accepted. */
function check(a: ParsedArgs): number {
  const file = a.positional[2]!;
  const p = parsePolicy(readPolicyFile(file));
  const features = [...p.features.keys()];
  if (json(a)) outJson({ file, ok: true, rules: p.rules, features, groups: [...p.groups.keys()], hostGroups: [...p.hostGroups.keys()] });
  else out(`${cell(file)}: valid, ${summary({ rules: p.rules, features })}`);
  return 0;
}

async function set(a: ParsedArgs): Promise<number> {
  const file = a.positional[2]!;
  const text = readPolicyFile(file);
  // Checked here first, so a mistake is said with this file's name before anything is sent.
  try {
    parsePolicy(text);
  } catch (e) {
    if (e instanceof LicdError) throw new LicdError(e.code, `${file}: ${e.message}; nothing was sent`, e.details);
    throw e;
  }
  const r = await adminRequest<PolicyInfo>(a, 'policy.set', { text });
  if (json(a)) outJson(r);
  else out(`policy set from ${cell(file)} and in force now (written to ${cell(r.file)} on the server): ${summary(r)}`);
  return 0;
}

export const policyCommands: Command[] = [
  {
    path: 'policy show',
    section: 'admin',
    synopsis: 'policy show',
    summary: 'show the sharing policy in force, with line numbers (refusals name them)',
    connects: true,
    json: '{file, rules, features, text}',
    examples: ['licctl policy show --user admin --password-file admin.password'],
    run: show,
  },
  {
    path: 'policy check',
    section: 'admin',
    synopsis: 'policy check FILE',
    summary: 'check a policy file here, without a server: every problem with its line and the fix',
    args: { min: 1, max: 1, names: 'the policy FILE' },
    json: '{file, ok, rules, features, groups, hostGroups}',
    examples: ['licctl policy check policy.txt'],
    run: check,
  },
  {
    path: 'policy set',
    section: 'admin',
    synopsis: 'policy set FILE',
    summary: 'replace the sharing policy: checked, in force at once, written to the server\'s policy.file',
    details: 'Seats already out stay; new checkouts and borrows are judged by the new rules. docs/policy.md describes the format.',
    connects: true,
    args: { min: 1, max: 1, names: 'the policy FILE' },
    json: '{file, rules, features, text}',
    examples: ['licctl policy set policy.txt --user admin --password-file admin.password'],
    run: set,
  },
];
