/**
 * licd's MQTT access rules enforced by the embedded aedes broker's hooks
 * (src/mqtt/embedded-broker.ts): the same checks as for mosquitto (test/helpers/access-rules.ts).
 */
import test from 'ava';
import { accessRules, embeddedSite } from '../helpers/access-rules.ts';

for (const rule of accessRules) {
  test(`embedded broker: ${rule.title}`, async (t) => {
    const site = await embeddedSite();
    t.teardown(() => site.dispose());
    await rule.run(t, site);
  });
}
