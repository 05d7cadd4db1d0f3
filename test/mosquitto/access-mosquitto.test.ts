/**
 * licd's MQTT access rules enforced by mosquitto with the shipped config and ACL
 * (systemd/mosquitto/), for MQTT 3.1.1 and MQTT 5 clients. The same checks run against the
 * embedded broker in access-embedded.test.ts; they live in test/helpers/access-rules.ts.
 */
import test from 'ava';
import { accessRules, mosquittoSite } from '../helpers/access-rules.ts';

for (const version of [4, 5] as const) {
  for (const rule of accessRules) {
    test(`mosquitto, MQTT ${version === 5 ? '5' : '3.1.1'}: ${rule.title}`, async (t) => {
      const site = await mosquittoSite(version);
      t.teardown(() => site.dispose());
      await rule.run(t, site);
    });
  }
}
