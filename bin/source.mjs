// What bin/licd.mjs, bin/licctl.mjs and bin/licd-console.mjs share: run a TypeScript entry of the
// sources through tsx, so a checkout needs no build step. tsx is a development dependency: the
// production form is the compiled build (`npm run build`), which the appliance image runs; without
// tsx this says so, naming the compiled entry point, instead of failing with a module error.
export async function tsxOrExplain(name, compiled) {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch (e) {
    if (e?.code !== 'ERR_MODULE_NOT_FOUND' || !String(e.message).includes("'tsx'")) throw e;
    process.stderr.write(
      `${name}: bin/${name}.mjs runs the TypeScript sources and needs tsx, a development dependency, which is not installed here.\n` +
        `A production install runs the compiled build instead: npm run build (on a machine with the dev dependencies), then node ${compiled}.\n`,
    );
    process.exit(1);
  }
  register();
}
