/**
 * A runtime that is not ready until a marker file exists (its path is the first argument), then becomes the real
 * runtime. Lets a test make a provisioning fail at the health check and then watch an operator's retry finish it.
 */
import { existsSync } from 'node:fs';

const marker = process.argv[2];
if (!marker) throw new Error('usage: lateRuntime.ts <marker file>');
const timer = setInterval(() => {
  if (!existsSync(marker)) return;
  clearInterval(timer);
  void import('../../runtime/src/main.ts');
}, 100);
