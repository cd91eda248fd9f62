/**
 * A local S3-compatible server for the S3 archive store's tests: s3rver (from npm) on a loopback port, its objects in
 * a temporary directory, with one bucket. The real @aws-sdk/client-s3 talks to it (path-style addressing).
 * stop() and start() again on the same port and directory: the store away for a while, its objects kept.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

export interface S3Emulator {
  /** BACKUP_S3_ENDPOINT. */
  readonly url: string;
  readonly bucket: string;
  /** What the control plane's S3 client reads through the SDK's default chain (set into process.env by start). */
  readonly credentials: { AWS_ACCESS_KEY_ID: string; AWS_SECRET_ACCESS_KEY: string };
  /** The stored bytes of an object, as S3 holds them. */
  object(key: string): Promise<Buffer>;
  /** Replaces an object's stored bytes (what a corrupted or tampered store would hold). */
  putObject(key: string, bytes: Buffer): Promise<void>;
  /** The server goes away (connections refused) until start(). */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

const CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

export async function startS3Emulator(bucket = 'clawdbot-backups'): Promise<S3Emulator> {
  const directory = await mkdtemp(path.join(tmpdir(), 's3rver-'));
  let server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory });
  const { port } = (await server.run()) as { port: number };
  const url = `http://127.0.0.1:${port}`;
  Object.assign(process.env, CREDENTIALS);
  const client = new S3Client({
    endpoint: url,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: CREDENTIALS.AWS_SECRET_ACCESS_KEY },
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  let running = true;
  return {
    url,
    bucket,
    credentials: CREDENTIALS,
    async object(key) {
      const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await object.Body!.transformToByteArray());
    },
    async putObject(key, bytes) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
    },
    async stop() {
      if (running) await server.close();
      running = false;
    },
    async start() {
      if (running) return;
      server = new S3rver({ port, address: '127.0.0.1', silent: true, directory });
      await server.run();
      running = true;
    },
    async close() {
      client.destroy();
      if (running) await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
