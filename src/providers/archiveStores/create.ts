/** The archive store the configuration names: the S3-compatible store when BACKUP_S3_BUCKET is set, else ARCHIVE_DIR. */
import type { Config } from '../../config.ts';
import { LocalArchiveStore, type ArchiveStore } from '../archiveStore.ts';
import { archiveKey } from './encryption.ts';
import { S3ArchiveStore } from './s3.ts';

export function createArchiveStore(config: Pick<Config, 'backups' | 'lifecycle' | 'secretsKey'>): ArchiveStore & { close?(): void } {
  if (config.backups.s3) return new S3ArchiveStore(config.backups.s3, archiveKey(config.secretsKey));
  return new LocalArchiveStore(config.lifecycle.archiveDir);
}
