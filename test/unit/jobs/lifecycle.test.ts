/**
 * The lifecycle jobs on in-memory fakes (no Redis, Postgres or emulator): what each does, in which order, what it
 * refuses, and that running it again changes nothing.
 */
import { expect } from 'chai';
import { DelayedError } from 'bullmq';
import { PermanentError } from '../../../src/errors.ts';
import { IllegalTransitionError } from '../../../src/instances/stateMachine.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../../src/instances/secrets.ts';
import { abandon } from '../../../src/jobs/abandon.ts';
import { suspend, resume } from '../../../src/jobs/lifecycle/billing.ts';
import { archive, cancel, purge } from '../../../src/jobs/lifecycle/cancellation.ts';
import { reactivate } from '../../../src/jobs/lifecycle/reactivation.ts';
import { resize } from '../../../src/jobs/lifecycle/resize.ts';
import { backupNow } from '../../../src/operations/backup.ts';
import { DEFAULT_PRICE_IDS } from '../../../core/plans.ts';
import type { LifecycleData } from '../../../src/queues/catalogue.ts';
import { FakeJob, fakeContext, type Fakes } from '../../support/fakes.ts';
import { rejection } from '../../support/rejection.ts';


const CANCELED_AT = 1_700_000_000;

/** An instance cancelled at CANCELED_AT, its database and service still there. */
async function cancelledInstance(f: Fakes, rows: Record<string, object[]> = {}) {
  const instance = f.instances.add({ status: 'cancelled', service_id: 'claw-svc', cancelled_at: new Date(CANCELED_AT * 1000) });
  const db = await f.customerDbs.give(instance.id, rows);
  await f.secrets.put(instanceOwner(instance.id), INSTANCE_SECRETS.runtimeSecret, 'shared');
  f.calls.length = 0;
  return { instance, db };
}

const lifecycleJob = (name: string, instanceId: string, canceledAt = CANCELED_AT) => new FakeJob<LifecycleData>(name, { instanceId, canceledAt });

describe('lifecycle jobs (fakes)', () => {
  describe('cancel', () => {
    it('stops a provisioning under way first, then revokes the key, stops the service, and schedules archive and purge', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', service_id: 'claw-svc' });
      const db = await f.customerDbs.give(instance.id);
      db.keys.push({ hash: 'h', label: 'l', revoked: false });
      await f.secrets.put(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey, 'claw_live_x');
      f.calls.length = 0;

      const result = await cancel(f.ctx, lifecycleJob('cancel', instance.id));
      expect(f.calls).to.deep.equal([
        'instances.update cancel_requested_at',
        'jobs.removeProvisionFlow',
        'customerDbs.revokeKeys',
        'secrets.delete pending_api_key',
        'compute.stop claw-svc',
        'instances.transition cancelled',
        'audit.record instance.cancelled',
        'jobs.addArchiveAndPurge',
      ]);
      expect(db.keys[0]!.revoked).to.equal(true);
      const row = f.instances.get(instance.id);
      expect(row.status).to.equal('cancelled');
      expect(row.cancelled_at!.getTime()).to.equal(CANCELED_AT * 1000);
      expect(result.archiveAt).to.equal(new Date(CANCELED_AT * 1000 + f.config.lifecycle.archiveAfterMs).toISOString());
      const [[, data, due]] = f.jobs.of('addArchiveAndPurge') as [[unknown, LifecycleData, { purgeAt: Date }]];
      expect(data).to.deep.equal({ instanceId: instance.id, canceledAt: CANCELED_AT });
      expect(due.purgeAt.getTime()).to.equal(CANCELED_AT * 1000 + f.config.lifecycle.purgeAfterMs);
    });

    it('waits, holding no worker, while a step of the flow is running, and meanwhile only stops further steps', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', service_id: 'claw-svc' });
      f.jobs.running = ['deploy'];
      const job = lifecycleJob('cancel', instance.id);
      expect(await rejection(cancel(f.ctx, job))).to.be.instanceOf(DelayedError);
      expect(job.delayedUntil).to.be.a('number');
      expect(f.calls).to.deep.equal(['instances.update cancel_requested_at', 'jobs.removeProvisionFlow (running deploy)']);
      expect(f.instances.get(instance.id).status).to.equal('provisioning');
      expect(f.instances.get(instance.id).cancel_requested_at).to.be.instanceOf(Date);

      // Its next try marks nothing again.
      f.calls.length = 0;
      expect(await rejection(cancel(f.ctx, job))).to.be.instanceOf(DelayedError);
      expect(f.calls).to.deep.equal(['jobs.removeProvisionFlow (running deploy)']);
    });

    it('waits for another lifecycle job of the same customer to finish', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'active' });
      f.locks.held.add(instance.id);
      const job = lifecycleJob('cancel', instance.id);
      expect(await rejection(cancel(f.ctx, job))).to.be.instanceOf(DelayedError);
      expect(f.calls).to.deep.equal([]);
    });

    it('does nothing to an instance that already ended (a repeated cancellation)', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'archived' });
      expect(await cancel(f.ctx, lifecycleJob('cancel', instance.id))).to.deep.equal({ skipped: 'instance is archived' });
      expect(f.calls).to.deep.equal([]);
    });
  });

  describe('archive', () => {
    it('exports, verifies what it wrote, and only then deletes the service, the database and the secrets', async () => {
      const f = fakeContext();
      const { instance } = await cancelledInstance(f, { memories: [{ id: 1, content: 'likes tea' }], workspace_files: [{ path: 'USER.md' }] });
      const result = await archive(f.ctx, lifecycleJob('archive', instance.id));

      const location = `${instance.workspace_id}/${CANCELED_AT}.jsonl.gz`;
      expect(result.location).to.equal(location);
      expect(f.calls).to.deep.equal([
        'customerDbs.exportArchive',
        `archives.write ${location}`,
        `archiveRecords.save ${location}`,
        'archiveRecords.markVerified',
        'compute.deleteService claw-svc',
        'instances.update service_id,service_requested_at',
        'secrets.delete pending_api_key',
        `database.deleteDatabase claw_${instance.workspace_id.slice(3)}`,
        'secrets.delete database_url',
        'secrets.delete runtime_secret',
        'secrets.delete connections_key',
        'secrets.delete previous_database_url',
        'instances.transition archived',
        'audit.record instance.archived',
      ]);
      expect(f.instances.get(instance.id)).to.include({ status: 'archived', access_url: null, service_id: null });
      expect(f.audit.entries.at(-1)!.detail).to.deep.include({ rows: { ...zeroCounts(), memories: 1, workspace_files: 1 } });
      expect(f.secrets.values.size).to.equal(0);
    });

    it('after a failure past the export, verifies the stored archive instead of exporting again', async () => {
      const f = fakeContext();
      const { instance } = await cancelledInstance(f, { memories: [{ id: 1 }] });
      const markVerified = f.archiveRecords.markVerified.bind(f.archiveRecords);
      f.archiveRecords.markVerified = () => Promise.reject(new Error('connection terminated'));
      await rejection(archive(f.ctx, lifecycleJob('archive', instance.id)));
      expect(f.instances.get(instance.id).status).to.equal('cancelled');

      f.archiveRecords.markVerified = markVerified;
      f.calls.length = 0;
      await archive(f.ctx, lifecycleJob('archive', instance.id));
      expect(f.calls).to.not.include('customerDbs.exportArchive');
      expect(f.calls[0]).to.equal('archiveRecords.markVerified');
      expect(f.instances.get(instance.id).status).to.equal('archived');
    });

    it('deletes nothing when the stored archive does not match what was written', async () => {
      const f = fakeContext();
      const { instance, db } = await cancelledInstance(f, { memories: [{ id: 1 }] });
      const realWrite = f.archives.write.bind(f.archives);
      f.archives.write = async (name, source) => {
        const stored = await realWrite(name, source);
        f.archives.files.set(name, Buffer.from('bit rot')); // the disk does not give back what it took
        return stored;
      };
      const err = await rejection(archive(f.ctx, lifecycleJob('archive', instance.id)));
      expect(err).to.be.instanceOf(PermanentError);
      expect((err as Error).message).to.include('does not match what was written');
      expect(f.calls.some((c) => c.startsWith('compute.deleteService') || c.startsWith('database.deleteDatabase'))).to.equal(false);
      expect(f.instances.get(instance.id).status).to.equal('cancelled');
      expect(await f.customerDbs.exists(instance.id)).to.equal(true);
      expect(db.rows.memories).to.have.length(1);
    });

    it('archives an instance that never had a database by deleting what there is', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'cancelled', cancelled_at: new Date(CANCELED_AT * 1000) });
      expect(await archive(f.ctx, lifecycleJob('archive', instance.id))).to.deep.equal({ archived: 'nothing to export' });
      expect(f.calls).to.not.include('customerDbs.exportArchive');
      expect(f.instances.get(instance.id).status).to.equal('archived');
      expect(f.audit.entries.at(-1)!.detail).to.deep.equal({ nothing: 'no database was ever made' });
    });

    it('ignores an archive scheduled by an earlier cancellation that a reactivation undid', async () => {
      const f = fakeContext();
      const { instance } = await cancelledInstance(f);
      expect(await archive(f.ctx, lifecycleJob('archive', instance.id, CANCELED_AT - 3600))).to.deep.equal({ skipped: 'scheduled by an earlier cancellation' });
      expect(f.calls).to.deep.equal([]);
    });
  });

  describe('purge', () => {
    it('waits for the archive, then deletes it and the personal data, keeping the ids', async () => {
      const f = fakeContext();
      const { instance } = await cancelledInstance(f, { memories: [{ id: 1 }] });
      const early = lifecycleJob('purge', instance.id);
      expect(await rejection(purge(f.ctx, early))).to.be.instanceOf(DelayedError);
      expect(early.delayedUntil).to.be.a('number');
      expect(f.calls).to.deep.equal([]);

      // Backups taken while it ran go with the purge too.
      await backupNow(f.ctx, instance, 'scheduled');
      await backupNow(f.ctx, instance, 'on-demand');
      await archive(f.ctx, lifecycleJob('archive', instance.id));
      expect(f.archives.files.size).to.equal(3);
      f.calls.length = 0;
      const result = await purge(f.ctx, lifecycleJob('purge', instance.id));
      expect(f.archives.files.size).to.equal(0);
      expect([...f.backups.runs.values()].map((b) => b.state)).to.deep.equal(['deleted', 'deleted']);
      expect(f.instances.get(instance.id)).to.include({ status: 'purged', email: null, customer_name: null, stripe_customer_id: instance.stripe_customer_id });
      expect(result.deleted).to.include('customer email and name').and.include('2 Stripe event payloads').and.include('2 backups');
      expect(f.calls.at(-2)).to.equal('instances.transition purged');
    });

    it('keeps the personal data a returning customer’s other instance still needs', async () => {
      const f = fakeContext();
      const { instance } = await cancelledInstance(f);
      const live = f.instances.add({ status: 'active', customer_id: instance.customer_id, email: instance.email });
      await archive(f.ctx, lifecycleJob('archive', instance.id));
      const result = await purge(f.ctx, lifecycleJob('purge', instance.id));
      expect(f.instances.get(instance.id).status).to.equal('purged');
      expect(f.instances.get(live.id).email).to.equal(instance.email);
      expect(result.deleted).to.include('another instance of theirs is not purged').and.not.include('Stripe event payloads');
      expect(f.calls.filter((c) => c.startsWith('stripeEvents.scrub'))).to.deep.equal([]);
    });
  });

  describe('reactivate', () => {
    it('calls off the pending archive and purge, and provisions the same workspace as a new generation', async () => {
      const f = fakeContext();
      const { instance } = await cancelledInstance(f);
      const job = new FakeJob('reactivate', { instanceId: instance.id, subscriptionId: 'subrow-new', plan: 'pro' as const });
      expect(await reactivate(f.ctx, job)).to.deep.equal({ from: 'cancelled', generation: 2 });
      expect(f.jobs.of('removeArchiveAndPurge').map(([i, at]) => [(i as { id: string }).id, at])).to.deep.equal([[instance.id, CANCELED_AT]]);
      expect(f.instances.get(instance.id)).to.include({ status: 'provisioning', generation: 2, subscription_id: 'subrow-new', plan: 'pro', cancelled_at: null, api_key_hash: null });
      expect(f.jobs.of('addProvisionFlow')).to.deep.equal([[{ instanceId: instance.id, workspaceId: instance.workspace_id, generation: 2 }]]);
      expect(f.calls.indexOf('jobs.removeArchiveAndPurge')).to.be.below(f.calls.indexOf('jobs.addProvisionFlow'));
    });

    it('leaves a running customer alone', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'active' });
      expect(await reactivate(f.ctx, new FakeJob('reactivate', { instanceId: instance.id, subscriptionId: 's', plan: 'pro' as const }))).to.deep.equal({ skipped: 'instance is active' });
      expect(f.jobs.added).to.deep.equal([]);
    });
  });

  describe('resize', () => {
    it('adds the new plan’s skills, records the plan in STATE.json, reconfigures and redeploys; the customer’s files stay', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'active', service_id: 'claw-svc' });
      const db = await f.customerDbs.give(instance.id);
      db.files.set('skills/chat/SKILL.md', 'tuned by the customer');
      db.files.set('STATE.json', '{"plan":"starter"}');
      const result = await resize(f.ctx, new FakeJob('resize', { instanceId: instance.id, plan: 'pro' as const }));

      expect(result).to.include({ from: 'starter', to: 'pro' });
      expect(db.files.get('skills/chat/SKILL.md')).to.equal('tuned by the customer');
      expect(db.files.has('skills/gmail/SKILL.md')).to.equal(true);
      expect(db.files.get('STATE.json')).to.include('"pro"');
      expect(f.compute.services.get('claw-svc')!.variables).to.include({ PLAN: 'pro', MESSAGE_LIMIT: '20000', RATE_LIMIT: '120/m' });
      expect(f.instances.get(instance.id).plan).to.equal('pro');
      expect(f.calls.indexOf('compute.configure claw-svc')).to.be.below(f.calls.indexOf('compute.deploy claw-svc'));
      // A verified backup of the database comes before anything changes.
      expect(f.calls.indexOf('backups.verified')).to.be.within(0, f.calls.indexOf('compute.configure claw-svc'));
      expect([...f.backups.runs.values()].map((b) => `${b.reason} ${b.state}`)).to.deep.equal(['plan-change verified']);

      f.calls.length = 0;
      expect(await resize(f.ctx, new FakeJob('resize', { instanceId: instance.id, plan: 'pro' as const }))).to.deep.equal({ unchanged: 'pro' });
      expect(f.calls).to.deep.equal([]);
    });

    it('waits for a suspended customer to be running again (resume applies the change)', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'suspended', service_id: 'claw-svc' });
      expect(await resize(f.ctx, new FakeJob('resize', { instanceId: instance.id, plan: 'pro' as const }))).to.deep.equal({ skipped: 'instance is suspended' });
      expect(f.calls).to.deep.equal([]);
    });
  });

  describe('suspend and resume', () => {
    it('does not suspend a customer whose payment went through during the grace', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'active', service_id: 'claw-svc' });
      f.stripe.set(instance.stripe_subscription_id, 'active');
      expect(await suspend(f.ctx, new FakeJob('suspend', { instanceId: instance.id }))).to.deep.equal({ skipped: 'subscription is active' });
      expect(f.calls).to.deep.equal([]);
    });

    it('suspends an overdue customer once: the account refuses the key, the service stops, the customer is told', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'active', service_id: 'claw-svc' });
      const db = await f.customerDbs.give(instance.id);
      f.stripe.set(instance.stripe_subscription_id, 'past_due');
      f.calls.length = 0;
      await suspend(f.ctx, new FakeJob('suspend', { instanceId: instance.id }));
      await suspend(f.ctx, new FakeJob('suspend', { instanceId: instance.id }));

      expect(db.suspendedReason).to.include('past_due');
      expect(f.calls).to.deep.equal([
        'customerDbs.setSuspension set',
        'compute.stop claw-svc',
        'instances.transition suspended',
        'audit.record instance.suspended',
        'mailer.send Your Clawdbot is paused',
      ]);
      expect(f.instances.get(instance.id).status).to.equal('suspended');
    });

    it('resumes a customer who paid, and applies a plan change made while suspended', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'suspended', service_id: 'claw-svc', past_due_since: new Date() });
      const db = await f.customerDbs.give(instance.id);
      db.suspendedReason = 'overdue';
      f.stripe.set(instance.stripe_subscription_id, 'active', DEFAULT_PRICE_IDS.team);
      const job = new FakeJob('resume', { instanceId: instance.id });
      expect(await resume(f.ctx, job)).to.deep.equal({ resumed: 'active' });
      expect(db.suspendedReason).to.equal(null);
      expect(f.instances.get(instance.id)).to.include({ status: 'active', past_due_since: null });
      expect(f.compute.services.get('claw-svc')!.running).to.equal(true);
      expect(f.jobs.of('addResize').map(([i, plan, id]) => [(i as { id: string }).id, plan, id])).to.deep.equal([[instance.id, 'team', `resume-${job.id}`]]);
    });
  });

  describe('abandon', () => {
    it('refuses anything but a failed provisioning, before undoing anything', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'active', service_id: 'claw-svc' });
      const job = new FakeJob('abandon', { instanceId: instance.id, workspaceId: instance.workspace_id });
      expect(await rejection(abandon(f.ctx, job))).to.be.instanceOf(IllegalTransitionError);
      expect(f.calls).to.deep.equal([]);
    });

    it('removes the flow, undoes what was made newest first, and marks the instance abandoned once', async () => {
      const f = fakeContext();
      // create-service asked for the service and died before recording its id: it is deleted by its name.
      const instance = f.instances.add({ status: 'failed', failed_step: 'create-service', service_requested_at: new Date() });
      await f.customerDbs.give(instance.id);
      f.calls.length = 0;
      const job = new FakeJob('abandon', { instanceId: instance.id, workspaceId: instance.workspace_id });
      await abandon(f.ctx, job);
      await abandon(f.ctx, job); // an operator's second click, or a retry after a crash
      const slug = instance.workspace_id.slice(3);
      expect(f.calls.slice(0, 10)).to.deep.equal([
        'jobs.removeProvisionFlow',
        `compute.deleteService claw-${slug}`,
        'instances.update service_id,service_requested_at',
        'secrets.delete pending_api_key',
        `database.deleteDatabase claw_${slug}`,
        'secrets.delete database_url',
        'secrets.delete runtime_secret',
        'secrets.delete connections_key',
        'secrets.delete previous_database_url',
        'instances.transition abandoned',
      ]);
      expect(f.audit.actions(instance.id)).to.deep.equal(['instance.abandoned']);
      expect(f.instances.get(instance.id).status).to.equal('abandoned');
    });

    it('deletes no service when none was ever asked for (and looks for none by name)', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'failed', failed_step: 'create-branch' });
      await abandon(f.ctx, new FakeJob('abandon', { instanceId: instance.id, workspaceId: instance.workspace_id }));
      expect(f.calls.filter((c) => c.startsWith('compute.'))).to.deep.equal([]);
      expect(f.instances.get(instance.id).status).to.equal('abandoned');
    });
  });
});

function zeroCounts(): Record<string, number> {
  return {
    workspace_files: 0,
    memories: 0,
    conversations: 0,
    conversation_messages: 0,
    usage_tracking: 0,
    usage_notices: 0,
    skills: 0,
    webhook_deliveries: 0,
  };
}
