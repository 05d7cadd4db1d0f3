#!/usr/bin/env node
// Runs the maintenance console's TypeScript source through tsx, so a checkout needs no build step. tsx is a
// development dependency: the production form is the compiled build (`npm run build`, then
// `node dist/src/console/console-main.js`), which licd-console@.service runs.
let register;
try {
  ({ register } = await import('tsx/esm/api'));
} catch (e) {
  if (e?.code !== 'ERR_MODULE_NOT_FOUND' || !String(e.message).includes("'tsx'")) throw e;
  process.stderr.write(
    'licd-console: bin/licd-console.mjs runs the TypeScript sources and needs tsx, a development dependency, which is not installed here.\n' +
      'A production install runs the compiled build instead: npm run build (on a machine with the dev dependencies), then node dist/src/console/console-main.js ARGS.\n',
  );
  process.exit(1);
}
register();
const { main } = await import('../src/console/main.ts');
await main(process.argv.slice(2));
