/**
 * The console's entry point in the compiled build: `node dist/src/console/console-main.js --tty
 * /dev/ttyGS0` (what licd-console@.service runs). In a checkout bin/licd-console.mjs runs the same
 * main() from the TypeScript sources through tsx.
 */
import { main } from './main.ts';

await main(process.argv.slice(2));
