/** Shared entry logic: load config (naming every problem at once), start the roles, drain on SIGTERM. */
import { ConfigError, loadConfig } from '../config.ts';
import { startControlPlane } from '../controlPlane.ts';
import { logger } from '../../core/logger.ts';

const log = logger('main');

export async function run(roles: { web: boolean; worker: boolean }): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      // Before the config is read, lines are JSON at info: one line naming every problem.
      log.error('invalid configuration', { problems: err.problems });
      process.exit(1);
    }
    throw err;
  }
  const plane = await startControlPlane(config, roles);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('draining', { signal });
    const force = setTimeout(() => process.exit(1), 30_000);
    force.unref();
    await plane.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

export function main(roles: { web: boolean; worker: boolean }): void {
  run(roles).catch((err: Error) => {
    log.error('failed to start', { error: err.message });
    process.exit(1);
  });
}
