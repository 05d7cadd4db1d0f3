/**
 * What a box announces (src/discovery/plan.ts) for the deployments docs/scale-out.md names, and
 * how a client reads an answer (src/discovery/mdns.ts), without a network.
 */
import test from 'ava';
import { parseConfig } from '../../src/config.ts';
import { announcementOf } from '../../src/discovery/plan.ts';
import { serversIn, SERVICE_TYPE } from '../../src/discovery/mdns.ts';

const FP = 'SHA256:' + Array.from({ length: 32 }, () => 'AB').join(':');

test('the appliance (mosquitto on this machine) announces 1883, and 8883 with its fingerprint', (t) => {
  const config = parseConfig({ entitlementFile: '/etc/licd/entitlement.json', vendorPublicKey: '0'.repeat(64), mqtt: { broker: 'external', url: 'mqtt://127.0.0.1:1883', brokerCertFile: '/etc/licd/tls/cert.pem' }, discovery: { name: 'licd-a' } });
  t.true(config.discovery.enabled, 'on by default outside development mode');
  const a = announcementOf(config, { embedded: null, fingerprint: FP }, '0.1.0');
  t.like(a, { plan: { name: 'licd-a', mqttPort: 1883, mqttsPort: 8883, fingerprint: FP } });
});

test('a development daemon on loopback announces nothing, and says why; discovery is off in development unless asked', (t) => {
  const dev = parseConfig({});
  t.false(dev.discovery.enabled);
  t.true(parseConfig({}, { LICD_DISCOVERY: '1' }).discovery.enabled);
  const a = announcementOf(dev, { embedded: { plain: { host: '127.0.0.1', port: 1883 }, tls: null }, fingerprint: null }, '0.1.0');
  t.true('none' in a && /loopback only.*mqtt\.host/.test(a.none));
  const lan = announcementOf(dev, { embedded: { plain: { host: '0.0.0.0', port: 1883 }, tls: { host: '0.0.0.0', port: 8883 } }, fingerprint: FP }, '0.1.0');
  t.like(lan, { plan: { mqttPort: 1883, mqttsPort: 8883, addresses: null } });
  const urls = announcementOf(parseConfig({ discovery: { urls: ['mqtts://licd.studio.lan:8883'] } }), { embedded: null, fingerprint: null }, '0.1.0');
  t.like(urls, { plan: { urls: ['mqtts://licd.studio.lan:8883'] } });
});

test('bad discovery and cluster settings are refused, naming the field', (t) => {
  t.throws(() => parseConfig({ discovery: { urls: ['http://x'] } }), { message: /discovery.*urls\[0\].*broker URL/ });
  t.throws(() => parseConfig({ discovery: { name: 'a b' } }), { message: /discovery.*name/ });
  t.throws(() => parseConfig({}, { LICD_DISCOVERY: 'yes' }), { message: /LICD_DISCOVERY must be 0 \(off\) or 1 \(on\)/ });
  t.throws(() => parseConfig({ cluster: { serverId: 'box-a' } }), { message: /cluster\.serverId.*needs an external broker/ });
  t.throws(() => parseConfig({ mqtt: { broker: 'external', url: 'mqtt://127.0.0.1:1883' }, cluster: { serverId: 'Box A' } }), { message: /cluster.*serverId/ });
});

test('a client reads an answer: the ports on every address of the box, or the explicit URLs; foreign or malformed answers are left out', (t) => {
  const instance = `licd-a.${SERVICE_TYPE}`;
  const packet = {
    answers: [{ name: SERVICE_TYPE, type: 'PTR', data: instance }],
    additionals: [
      { name: instance, type: 'SRV', data: { port: 1883, target: 'box.local' } },
      { name: instance, type: 'TXT', data: [Buffer.from('v=1'), Buffer.from('server=licd-a'), Buffer.from('mqtt=1883'), Buffer.from('mqtts=8883'), Buffer.from(`fp=${FP}`), Buffer.from('version=0.1.0')] },
      { name: 'box.local', type: 'A', data: '10.217.1.1' },
      { name: 'box.local', type: 'A', data: '10.217.2.1' },
    ],
  };
  t.deepEqual(serversIn(packet, { address: '10.217.1.1' }), [
    { instance, server: 'licd-a', urls: ['mqtt://10.217.1.1:1883', 'mqtt://10.217.2.1:1883', 'mqtts://10.217.1.1:8883', 'mqtts://10.217.2.1:8883'], fingerprint: FP, version: '0.1.0', address: '10.217.1.1' },
  ]);
  const explicit = { answers: [{ name: SERVICE_TYPE, type: 'PTR', data: instance }], additionals: [{ name: instance, type: 'TXT', data: ['v=1', 'server=licd-a', 'urls=mqtts://licd.studio.lan:8883,junk url'] }] };
  t.deepEqual(serversIn(explicit, { address: '10.0.0.9' })[0]!.urls, ['mqtts://licd.studio.lan:8883']);
  t.deepEqual(serversIn({ answers: [{ name: instance, type: 'TXT', data: ['v=2', 'mqtt=1883'] }] }, { address: '10.0.0.9' }), []);
  t.deepEqual(serversIn({ answers: [{ name: instance, type: 'TXT', data: ['v=1', 'mqtt=99999'] }] }, { address: '10.0.0.9' }), []);
  t.deepEqual(serversIn({ answers: [{ name: '_http._tcp.local', type: 'PTR', data: 'x._http._tcp.local' }] }, { address: '10.0.0.9' }), []);
});
