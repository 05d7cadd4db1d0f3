#!/usr/bin/env node
// Runs licctl's TypeScript source through tsx, so a checkout needs no build step.
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../src/cli/licctl.ts');
await main(process.argv.slice(2));
