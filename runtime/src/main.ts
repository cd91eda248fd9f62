/**
 * Entry point of one customer's runtime: configuration from env, then the server until SIGTERM/SIGINT.
 * Logs are JSON lines (pretty in development), each with the workspace id; they never carry DATABASE_URL or keys.
 */
import { loadRuntimeConfig, RuntimeConfigError, type RuntimeConfig } from './config.ts';
import { startRuntime } from './server.ts';
import { configureLogs, logger } from '../../core/logger.ts';

const log = logger('runtime');

let config: RuntimeConfig;
try {
  config = loadRuntimeConfig(process.env);
} catch (err) {
  // Before the config is read, lines are JSON at info: one line naming every problem.
  if (err instanceof RuntimeConfigError) log.error('invalid configuration', { problems: err.problems });
  else log.error('invalid configuration', { error: (err as Error).message });
  process.exit(1);
}
configureLogs({ ...config.log, bindings: { workspace: config.workspaceId } });

const runtime = await startRuntime(config).catch((err: Error) => {
  log.error('failed to start', { error: err.message });
  process.exit(1);
});
log.info('listening', { port: Number(new URL(runtime.url).port) });

async function shutdown(): Promise<void> {
  try {
    await runtime.close();
    process.exit(0);
  } catch (err) {
    log.error('failed to shut down cleanly', { error: (err as Error).message });
    process.exit(1);
  }
}
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
