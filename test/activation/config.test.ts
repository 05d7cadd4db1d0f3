/** The box's activation setting: activation.url in the config, LICD_ACTIVATION_URL over it. */
import test from 'ava';
import { parseConfig } from '../../src/config.ts';
import { activateUrl } from '../../src/activation/client.ts';

test('activation.url: from the file, the environment over it, refused when it is no http(s) URL; /v1/activate is added unless given', (t) => {
  t.is(parseConfig({}).activation.url, null);
  t.is(parseConfig({ activation: { url: 'https://licenses.example.com' } }).activation.url, 'https://licenses.example.com');
  t.is(parseConfig({ activation: { url: 'https://a.example' } }, { LICD_ACTIVATION_URL: 'http://127.0.0.1:8470' }).activation.url, 'http://127.0.0.1:8470');
  t.regex(t.throws(() => parseConfig({ activation: { url: 'ftp://x' } }))!.message, /config: activation\.url must be an http:\/\/ or https:\/\/ URL of the vendor's activation service, got "ftp:\/\/x"/);
  t.regex(t.throws(() => parseConfig({}, { LICD_ACTIVATION_URL: 'licenses' }))!.message, /LICD_ACTIVATION_URL must be an http/);
  t.regex(t.throws(() => parseConfig({ activation: { uri: 'http://x' } }))!.message, /activation/);
  t.is(activateUrl('https://licenses.example.com/'), 'https://licenses.example.com/v1/activate');
  t.is(activateUrl('http://127.0.0.1:8470/v1/activate'), 'http://127.0.0.1:8470/v1/activate');
});
