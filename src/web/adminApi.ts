/** The operators' API (Authorization: Bearer ADMIN_TOKEN): instance status, and provisioning comped customers. */
import { createHash, randomUUID } from 'node:crypto';
import Router from '@koa/router';
import type { Config } from '../config.ts';
import { instanceForCustomer } from '../db/instances.ts';
import type { Db } from '../db/pool.ts';
import { isPlanName, PLANS } from '../plans.ts';
import { recordInstance, startProvisioning } from '../provisioning.ts';
import type { Queues } from '../queues/connection.ts';
import { requireAdminToken } from './auth.ts';
import { HttpError } from './httpError.ts';
import { readJsonBody } from './rawBody.ts';

const EMAIL = /^[^@\s<>"]{1,64}@[^@\s<>"]{1,253}\.[^@\s<>".]{2,63}$/;

export function adminApi(deps: { config: Config; db: Db; queues: Queues }): Router {
  const router = new Router({ prefix: '/api' });
  router.use(requireAdminToken(deps.config.admin.token));

  router.get('/customers/:customerRef/instance', async (ctx) => {
    const instance = await instanceForCustomer(deps.db, ctx.params.customerRef!);
    if (!instance) throw new HttpError(404, 'not_found', 'no instance for this customer');
    const { rows: steps } = await deps.db.query<{ name: string; state: string; started_at: Date | null; finished_at: Date | null }>(
      'SELECT name, state, started_at, finished_at FROM steps WHERE instance_id = $1 ORDER BY started_at NULLS LAST, name',
      [instance.id],
    );
    ctx.body = {
      customerId: instance.customer_id,
      workspaceId: instance.workspace_id,
      accessUrl: instance.access_url,
      status: instance.status,
      plan: instance.plan,
      failure: instance.failed_step ? { step: instance.failed_step, reason: instance.failure_reason } : null,
      steps: steps.map((s) => ({ name: s.name, state: s.state, startedAt: s.started_at, finishedAt: s.finished_at })),
    };
  });

  router.post('/admin/provision', async (ctx) => {
    const body = (await readJsonBody(ctx.req)) as { email?: unknown; plan?: unknown; name?: unknown } | null;
    const problems: string[] = [];
    const email = typeof body?.email === 'string' ? body.email.trim() : '';
    if (!EMAIL.test(email)) problems.push('email must be an email address');
    if (!isPlanName(body?.plan)) problems.push(`plan must be one of ${Object.keys(PLANS).join(', ')}`);
    const name = body?.name === undefined || body.name === null ? null : typeof body.name === 'string' ? body.name.trim().slice(0, 200) : undefined;
    if (name === undefined) problems.push('name, when given, must be a string');
    if (problems.length) throw new HttpError(400, 'invalid_request', problems.join('; '));

    // With an Idempotency-Key, repeating the request provisions nothing new.
    const idempotencyKey = ctx.get('idempotency-key');
    const ref = idempotencyKey ? createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 32) : randomUUID();
    const instance = await recordInstance(deps.db, deps.config, {
      stripeCustomerId: null,
      subscriptionRef: `comp_${ref}`,
      email,
      name: name ?? null,
      priceId: null,
      plan: PLANS[body!.plan as keyof typeof PLANS],
      subscriptionStatus: 'active',
      comped: true,
      actor: 'admin-api',
    });
    await startProvisioning(deps.queues, instance);
    ctx.status = 202;
    ctx.body = { customerId: instance.customer_id, workspaceId: instance.workspace_id, instanceId: instance.id };
  });

  return router;
}
