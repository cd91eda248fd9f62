/**
 * Calls from customers' runtimes. `POST /api/runtime/usage`: a runtime reports that its month's messages reached
 * 80 % or 100 % of the plan; the control plane emails the customer once per month and threshold.
 * `POST /api/runtime/key-rotated`: the customer rotated their key through the runtime's API. Each call is
 * signed with the instance's own secret (HMAC over timestamp and raw body, checked in constant time).
 */
import { randomBytes } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { Instances } from '../db/instances.ts';
import type { UsageNotices } from '../db/usageNotices.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import type { JobQueue } from '../queues/jobQueue.ts';
import type { SecretStore } from '../secrets.ts';
import { KEY_ROTATED_PATH, NOTICE_PATH, NOTICE_SIGNATURE_HEADER, NOTICE_WORKSPACE_HEADER, noticeSignatureValid } from '../../core/usageNotice.ts';
import { HttpError } from '../../core/http/httpError.ts';
import { readRawBody } from '../../core/http/rawBody.ts';

const UNKNOWN_WORKSPACE_SECRET = randomBytes(32).toString('hex');

export function runtimeApi(deps: { instances: Instances; usageNotices: UsageNotices; jobs: JobQueue; secrets: Pick<SecretStore, 'get'> }): Router {
  const router = new Router();
  /** The signed call's instance and raw body; one 401 for an unknown workspace and a bad signature. */
  async function verified(ctx: Context): Promise<{ instanceId: string; workspaceId: string; raw: string; signedAt: Date }> {
    const raw = (await readRawBody(ctx.req, 16 * 1024)).toString('utf8');
    const workspaceId = ctx.get(NOTICE_WORKSPACE_HEADER);
    const instanceId = await deps.instances.idOfWorkspace(workspaceId);
    const secret = instanceId ? await deps.secrets.get(instanceOwner(instanceId), INSTANCE_SECRETS.runtimeSecret) : null;
    // One answer for an unknown workspace and a bad signature (the signature is checked either way, against a
    // throwaway secret when there is none): callers learn nothing about which workspaces exist.
    const valid = noticeSignatureValid(ctx.get(NOTICE_SIGNATURE_HEADER), raw, secret ?? UNKNOWN_WORKSPACE_SECRET);
    if (!instanceId || !secret || !valid) throw new HttpError(401, 'unauthorized', 'unknown workspace or bad signature');
    // When the runtime signed it (checked to be within five minutes of now).
    const signedAt = new Date(Number(/(?:^|,)\s*t=(\d+)/.exec(ctx.get(NOTICE_SIGNATURE_HEADER))![1]) * 1000);
    return { instanceId, workspaceId, raw, signedAt };
  }

  router.post(NOTICE_PATH, async (ctx) => {
    const { instanceId, workspaceId, raw } = await verified(ctx);
    const notice = parseNotice(raw, workspaceId);
    const recorded = await deps.usageNotices.record(instanceId, notice);
    // Enqueued on every accepted notice, not only the first: if Redis failed after the row was recorded, the
    // runtime's retry still gets the email sent. The job id keeps it to one email.
    await deps.jobs.addUsageEmail({ instanceId, month: notice.month, threshold: notice.threshold });
    ctx.body = { received: true, duplicate: !recorded };
  });

  // The customer rotated their key through the runtime: the instance records the new key's hash and label (a
  // repeated notice records nothing twice, and an older one sent again does not put its key back).
  router.post(KEY_ROTATED_PATH, async (ctx) => {
    const { instanceId, workspaceId, raw, signedAt } = await verified(ctx);
    const key = parseKeyRotation(raw, workspaceId);
    const auditId = await deps.instances.recordKeyRotation(instanceId, key, { actor: 'customer', detail: { via: 'runtime-api' } }, signedAt);
    ctx.body = { received: true, duplicate: auditId === null };
  });
  return router;
}

function parseJson<T>(raw: string): T {
  try {
    return JSON.parse(raw) as T;
  } catch {
    throw new HttpError(400, 'invalid_json', 'the body is not valid JSON');
  }
}

function parseKeyRotation(raw: string, workspaceId: string): { hash: string; label: string } {
  const body = parseJson<{ workspaceId?: unknown; hash?: unknown; label?: unknown } | null>(raw);
  const ok =
    body?.workspaceId === workspaceId &&
    typeof body.hash === 'string' &&
    /^[0-9a-f]{64}$/.test(body.hash) &&
    typeof body.label === 'string' &&
    /^claw_[0-9A-Za-z]{6}…[0-9A-Za-z]{4}$/.test(body.label);
  if (!ok) throw new HttpError(400, 'invalid_notice', 'expected { workspaceId, hash: hex SHA-256, label: claw_xxxxxx…xxxx }');
  return { hash: body.hash as string, label: body.label as string };
}

function parseNotice(raw: string, workspaceId: string): { month: string; threshold: 80 | 100; used: number; limit: number } {
  const body = parseJson<{ workspaceId?: unknown; month?: unknown; threshold?: unknown; used?: unknown; limit?: unknown } | null>(raw);
  const ok =
    body?.workspaceId === workspaceId &&
    typeof body.month === 'string' &&
    /^\d{4}-\d{2}$/.test(body.month) &&
    (body.threshold === 80 || body.threshold === 100) &&
    Number.isInteger(body.used) &&
    Number.isInteger(body.limit) &&
    (body.limit as number) > 0;
  if (!ok) throw new HttpError(400, 'invalid_notice', 'expected { workspaceId, month: YYYY-MM, threshold: 80|100, used, limit }');
  return { month: body.month as string, threshold: body.threshold as 80 | 100, used: body.used as number, limit: body.limit as number };
}
