/**
 * licctl's entry point in the compiled build: `node dist/src/cli/licctl-main.js ARGS` (what the
 * appliance's /usr/local/bin/licctl runs). In a checkout bin/licctl.mjs runs the same main() from
 * the TypeScript sources through tsx.
 */
import { main } from './licctl.ts';

await main(process.argv.slice(2));
