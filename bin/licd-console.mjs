#!/usr/bin/env node
// Runs the maintenance console's TypeScript source through tsx (npm run build makes a compiled one).
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../src/console/main.ts');
await main(process.argv.slice(2));
