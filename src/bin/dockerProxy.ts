/** The Docker socket proxy's process: settings from the environment (every problem named at once), closed on SIGTERM. */
import { logger } from '../../core/logger.ts';
import { ConfigError } from '../config.ts';
import { loadDockerProxyConfig } from '../dockerProxy/config.ts';
import { startDockerProxy } from '../dockerProxy/server.ts';

const log = logger('docker.proxy');

async function main(): Promise<void> {
  let options;
  try {
    options = loadDockerProxyConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      log.error('invalid configuration', { problems: err.problems });
      process.exit(1);
    }
    throw err;
  }
  const proxy = await startDockerProxy(options);
  log.info('listening', { url: proxy.url, upstream: options.upstreamSocket, scope: options.scope, tokenRequired: options.token !== undefined, publicPorts: options.allowPublicPorts === true });
  const stop = async (signal: string) => {
    log.info('stopping', { signal });
    await proxy.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: Error) => {
  log.error('failed to start', { error: err.message });
  process.exit(1);
});
