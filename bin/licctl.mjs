#!/usr/bin/env node
// licctl from its TypeScript sources (bin/source.mjs); compiled: node dist/src/cli/licctl-main.js.
import { tsxOrExplain } from './source.mjs';
await tsxOrExplain('licctl', 'dist/src/cli/licctl-main.js ARGS');
const { main } = await import('../src/cli/licctl.ts');
await main(process.argv.slice(2));
