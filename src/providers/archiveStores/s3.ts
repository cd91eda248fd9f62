/**
 * The archive store on any S3-compatible object store (BACKUP_S3_BUCKET; BACKUP_S3_ENDPOINT with path-style
 * addressing for stores other than AWS). Objects are encrypted client-side (./encryption.ts) and uploaded as a
 * multipart upload of a stream of unknown length; the size and SHA-256 are of the encrypted bytes as stored.
 * Credentials come from the AWS SDK's default chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, a role).
 */
import { createHash } from 'node:crypto';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { DeleteObjectCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { checkArchiveName, measuringStream, type ArchiveStore, type StoredArchive } from '../archiveStore.ts';
import { decryptingStream, encryptingStream } from './encryption.ts';

export interface S3Settings {
  bucket: string;
  region: string;
  /** An S3-compatible store's URL (path-style addressing), or null for AWS itself. */
  endpoint: string | null;
}

/** Parts of 8 MiB: up to 80 GB within S3's 10,000 parts, with at most two parts in memory at once. */
const PART_BYTES = 8 * 1024 * 1024;

export class S3ArchiveStore implements ArchiveStore {
  private readonly client: S3Client;

  constructor(
    private readonly settings: S3Settings,
    private readonly key: Buffer,
  ) {
    this.client = new S3Client({
      region: settings.region,
      ...(settings.endpoint && { endpoint: settings.endpoint, forcePathStyle: true }),
    });
  }

  async write(name: string, source: Readable): Promise<StoredArchive> {
    checkArchiveName(name);
    const { stream: measure, measured } = measuringStream();
    const body = new PassThrough();
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.settings.bucket, Key: name, Body: body, ContentType: 'application/octet-stream' },
      partSize: PART_BYTES,
      queueSize: 1,
      leavePartsOnError: false,
    });
    const feeding = pipelineAsync(source, encryptingStream(this.key, name), measure, body);
    // Either side failing stops the other: an export that fails aborts the upload, a failed upload stops the export.
    feeding.catch(() => upload.abort().catch(() => undefined));
    try {
      await Promise.all([feeding, upload.done()]);
    } catch (err) {
      body.destroy();
      source.destroy();
      throw err;
    }
    return { location: name, ...measured() };
  }

  async checksum(name: string): Promise<Omit<StoredArchive, 'location'>> {
    const hash = createHash('sha256');
    let sizeBytes = 0;
    for await (const chunk of await this.stored(name)) {
      hash.update(chunk as Buffer);
      sizeBytes += (chunk as Buffer).length;
    }
    return { sizeBytes, sha256: hash.digest('hex') };
  }

  read(name: string): Readable {
    checkArchiveName(name);
    const out = new PassThrough();
    this.stored(name).then(
      (stored) => pipeline(stored, decryptingStream(this.key, name), out, () => undefined),
      (err: Error) => out.destroy(err),
    );
    return out;
  }

  async delete(name: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: checkArchiveName(name) }));
  }

  close(): void {
    this.client.destroy();
  }

  /** The object's stored (encrypted) bytes. */
  private async stored(name: string): Promise<Readable> {
    const object = await this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: checkArchiveName(name) }));
    return object.Body as Readable;
  }
}
