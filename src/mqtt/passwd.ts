import { createHash, pbkdf2Sync, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { LicdError } from '../core/errors.ts';
import { CLIENT_ID_HELP, CLIENT_ID_PATTERN } from '../core/validate.ts';

/** Checks a password against one stored hash. */
export type PasswordCheck = (password: string) => boolean;

/**
 * Reads a mosquitto password file (made with mosquitto_passwd): lines "name:$7$iterations$salt$hash"
 * (PBKDF2-SHA512, mosquitto 2's default) or "name:$6$salt$hash" (salted SHA-512). The embedded
 * broker takes its render-node logins from it, so one file serves both brokers. Clear-text
 * passwords are refused: hash the file in place with mosquitto_passwd -U.
 */
export function readPasswordFile(path: string, field: string): Map<string, PasswordCheck> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new LicdError('CONFIG_INVALID', `config: ${field}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? e}); make it with mosquitto_passwd -c ${path} NAME`, { field });
  }
  const users = new Map<string, PasswordCheck>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${path} line ${i + 1}`;
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    if (colon <= 0 || !CLIENT_ID_PATTERN.test(name)) {
      throw new LicdError('CONFIG_INVALID', `config: ${field}: ${where}: the user name must be ${CLIENT_ID_HELP} (it stands in MQTT topics)`, { field });
    }
    const parts = line.slice(colon + 1).split('$');
    let check: PasswordCheck | null = null;
    if (parts.length === 5 && parts[0] === '' && parts[1] === '7') {
      const iterations = Number(parts[2]);
      const salt = Buffer.from(parts[3]!, 'base64');
      const hash = Buffer.from(parts[4]!, 'base64');
      if (Number.isInteger(iterations) && iterations > 0 && iterations < 10_000_000 && hash.length > 0) {
        check = (pw) => {
          const got = pbkdf2Sync(pw, salt, iterations, hash.length, 'sha512');
          return timingSafeEqual(got, hash);
        };
      }
    } else if (parts.length === 4 && parts[0] === '' && parts[1] === '6') {
      const salt = Buffer.from(parts[2]!, 'base64');
      const hash = Buffer.from(parts[3]!, 'base64');
      if (hash.length === 64) check = (pw) => timingSafeEqual(createHash('sha512').update(pw).update(salt).digest(), hash);
    }
    if (!check) {
      throw new LicdError('CONFIG_INVALID', `config: ${field}: ${where}: the password of ${name} is not a mosquitto_passwd hash ($7$ or $6$); hash the file with mosquitto_passwd -U ${path}`, { field });
    }
    users.set(name, check);
  });
  return users;
}
