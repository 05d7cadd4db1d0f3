#!/usr/bin/env node
// Runs the daemon's TypeScript source through tsx, so a checkout needs no build step.
import { register } from 'tsx/esm/api';
register();
await import('../src/main.ts');
