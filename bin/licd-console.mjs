#!/usr/bin/env node
// The maintenance console from its TypeScript sources (bin/source.mjs); compiled:
// node dist/src/console/console-main.js (what licd-console@.service runs).
import { tsxOrExplain } from './source.mjs';
await tsxOrExplain('licd-console', 'dist/src/console/console-main.js ARGS');
const { main } = await import('../src/console/main.ts');
await main(process.argv.slice(2));
