/**
 * The archive store: where cancellation archives and backups are kept, as files of compressed exports. Two
 * implementations: a local directory (ARCHIVE_DIR, the default; LocalArchiveStore below) and any
 * S3-compatible object store (./archiveStores/s3.ts, when BACKUP_S3_BUCKET is set), chosen by createArchiveStore.
 * The size and SHA-256 are always of the bytes as stored.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';

export interface StoredArchive {
  location: string;
  sizeBytes: number;
  sha256: string;
}

/** What every archive store does; names are relative paths of safe segments (see checkArchiveName). */
export interface ArchiveStore {
  /** Stores what `source` yields under `name`, whole or not at all; answers the size and SHA-256 as stored. */
  write(name: string, source: Readable): Promise<StoredArchive>;
  /** Size and SHA-256 of what is stored now (the stored bytes, read back). */
  checksum(name: string): Promise<Omit<StoredArchive, 'location'>>;
  /** The archive as it was written (decrypted where the store encrypts); fails loudly if it was altered. */
  read(name: string): Readable;
  /** Deletes it (nothing to do when it is not there). */
  delete(name: string): Promise<void>;
}

/** Throws for a name that is not a relative path of safe segments (no '..', no absolute path). */
export function checkArchiveName(name: string): string {
  if (!/^[\w.-]+(\/[\w.-]+)*$/.test(name) || name.split('/').some((s) => s === '..' || s === '.')) {
    throw new Error(`invalid archive name ${name}`);
  }
  return name;
}

/** A pass-through that measures what goes through it: its size and SHA-256 once it has ended. */
export function measuringStream(): { stream: Transform; measured: () => Omit<StoredArchive, 'location'> } {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  let sha256: string | undefined;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      sizeBytes += chunk.length;
      done(null, chunk);
    },
  });
  return { stream, measured: () => ({ sizeBytes, sha256: (sha256 ??= hash.digest('hex')) }) };
}

/** The directory store (ARCHIVE_DIR). Writes are atomic: a temporary file, then a rename. */
export class LocalArchiveStore implements ArchiveStore {
  constructor(private readonly dir: string) {}

  async write(name: string, source: Readable): Promise<StoredArchive> {
    const location = this.pathOf(name);
    await mkdir(path.dirname(location), { recursive: true, mode: 0o700 });
    const temporary = `${location}.${process.pid}.partial`;
    const { stream: measure, measured } = measuringStream();
    try {
      await pipeline(source, measure, createWriteStream(temporary, { mode: 0o600 }));
      await rename(temporary, location);
    } catch (err) {
      await rm(temporary, { force: true });
      throw err;
    }
    return { location: name, ...measured() };
  }

  async checksum(name: string): Promise<Omit<StoredArchive, 'location'>> {
    const hash = createHash('sha256');
    let sizeBytes = 0;
    for await (const chunk of this.read(name)) {
      hash.update(chunk as Buffer);
      sizeBytes += (chunk as Buffer).length;
    }
    return { sizeBytes, sha256: hash.digest('hex') };
  }

  read(name: string): Readable {
    return createReadStream(this.pathOf(name));
  }

  async delete(name: string): Promise<void> {
    await rm(this.pathOf(name), { force: true });
  }

  private pathOf(name: string): string {
    return path.join(this.dir, checkArchiveName(name));
  }
}
