/**
 * Entry point of one customer's runtime: configuration from env, then the server until SIGTERM/SIGINT.
 * Logs never carry DATABASE_URL or keys.
 */
import { loadRuntimeConfig, type RuntimeConfig } from './config.ts';
import { startRuntime } from './server.ts';

let config: RuntimeConfig;
try {
  config = loadRuntimeConfig(process.env);
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}

const runtime = await startRuntime(config).catch((err: Error) => {
  console.error(`runtime ${config.workspaceId} failed to start: ${err.message}`);
  process.exit(1);
});
console.log(`runtime ${config.workspaceId} listening on ${new URL(runtime.url).port}`);

async function shutdown(): Promise<void> {
  try {
    await runtime.close();
    process.exit(0);
  } catch (err) {
    console.error(`runtime ${config.workspaceId} failed to shut down cleanly: ${(err as Error).message}`);
    process.exit(1);
  }
}
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
