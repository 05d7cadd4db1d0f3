#!/usr/bin/env node
// The daemon from its TypeScript sources (bin/source.mjs); compiled: node dist/src/main.js.
import { tsxOrExplain } from './source.mjs';
await tsxOrExplain('licd', 'dist/src/main.js --config FILE');
await import('../src/main.ts');
