/**
 * The archive store: a directory (ARCHIVE_DIR) of compressed exports. Writes are atomic (temporary file, then
 * rename), and the size and SHA-256 are measured on the bytes as written.
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

export class ArchiveStore {
  constructor(private readonly dir: string) {}

  /** Stores what `source` yields under `name` (a relative path of safe segments). */
  async write(name: string, source: Readable): Promise<StoredArchive> {
    const location = this.pathOf(name);
    await mkdir(path.dirname(location), { recursive: true, mode: 0o700 });
    const temporary = `${location}.${process.pid}.partial`;
    const hash = createHash('sha256');
    let sizeBytes = 0;
    const measure = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        sizeBytes += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, measure, createWriteStream(temporary, { mode: 0o600 }));
      await rename(temporary, location);
    } catch (err) {
      await rm(temporary, { force: true });
      throw err;
    }
    return { location: name, sizeBytes, sha256: hash.digest('hex') };
  }

  /** Size and SHA-256 of what is stored now. */
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
    if (!/^[\w.-]+(\/[\w.-]+)*$/.test(name) || name.split('/').some((s) => s === '..' || s === '.')) {
      throw new Error(`invalid archive name ${name}`);
    }
    return path.join(this.dir, name);
  }
}
