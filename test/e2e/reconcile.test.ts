/**
 * The reconciler end to end, on the local providers and on Railway and Neon (emulated): a service and a database
 * made behind the control plane's back under our naming, beside three live instances. The dry run lists exactly the
 * orphans; after ORPHAN_GRACE they are deleted with audit rows, and nothing of a live instance is touched. An active
 * instance whose database is dropped raises one incident and nothing is recreated; a drifted service is configured
 * for its plan again. Runs are asked for through the admin API (RECONCILE_INTERVAL stays 0).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { expect } from 'chai';
import { GraphQLClient } from 'graphql-request';
import { quoteIdent } from '../../core/postgres.ts';
import { instanceResources } from '../../src/instances/resources.ts';
import type { ReconcileReport } from '../../src/jobs/fleet/reconcile.ts';
import { RAILWAY_DOCUMENTS } from '../../src/providers/compute/railwayDocuments.ts';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { startHarness, waitUntil, type Harness, type HarnessOptions, type InstanceView } from '../support/harness.ts';
import { waitForIncidents } from '../support/jobWaits.ts';

/** What the providers hold, told by each backend in its own terms (rows, catalogs, the emulators' state). */
interface Backend {
  name: string;
  options: HarnessOptions;
  /** A service and a database under our naming that no instance knows of; answers the ids the reconciler lists them by. */
  makeOrphans(h: Harness): Promise<{ service: string; database: string; names: { serviceName: string; databaseName: string } }>;
  /** Locally, a runtime process still running for a service that has no row (its worker died outright). */
  strayProcess?(h: Harness): { name: string; child: ChildProcess };
  serviceExists(h: Harness, id: string): Promise<boolean>;
  /** Whether a customer database of this name is there (locally the database itself, its role aside; a Neon branch). */
  databaseNamed(h: Harness, name: string): Promise<boolean>;
  dropDatabase(h: Harness, branchId: string): Promise<void>;
  cleanUp(h: Harness, names: { serviceName: string; databaseName: string }): Promise<void>;
}

const newNames = () => instanceResources(`ws-${randomBytes(8).toString('hex')}`);

const LOCAL: Backend = {
  name: 'the local providers',
  options: {},
  async makeOrphans(h) {
    const names = newNames();
    const { serviceId } = await h.plane.ctx.compute.createService(names.serviceName);
    const made = await h.plane.ctx.database.ensureDatabase(names.databaseName);
    expect(made).to.have.property('ready');
    return { service: serviceId, database: names.databaseName, names };
  },
  async serviceExists(h, id) {
    return (await h.db.query('SELECT 1 FROM local_services WHERE name = $1', [id])).rowCount === 1;
  },
  async databaseNamed(h, name) {
    return (await h.db.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
  },
  async dropDatabase(h, branchId) {
    await h.db.query(`DROP DATABASE ${quoteIdent(branchId)} WITH (FORCE)`);
  },
  strayProcess(h) {
    const { serviceName } = newNames();
    // The runtime's command line and a workspace among ours: what the local provider starts, minus the runtime.
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60_000)', '--', ...h.config.runtime.args], {
      env: { PATH: process.env.PATH ?? '', WORKSPACE_DIR: path.join(h.config.runtime.workspacesDir, serviceName) },
      stdio: 'ignore',
    });
    return { name: serviceName, child };
  },
  async cleanUp(h, names) {
    // Left only if a test failed before the reconciler deleted them (they are on the shared Postgres server).
    await h.db.query(`DROP DATABASE IF EXISTS ${quoteIdent(names.databaseName)} WITH (FORCE)`);
    await h.db.query(`DROP ROLE IF EXISTS ${quoteIdent(names.databaseName)}`);
  },
};

const CLOUD: Backend = {
  name: 'Railway and Neon (emulated)',
  options: { cloud: {} },
  async makeOrphans(h) {
    const names = newNames();
    const { projectId, environmentId, auth } = h.config.railway!;
    const client = new GraphQLClient(h.railway!.url, { headers: { 'Project-Access-Token': auth.token } });
    const { serviceCreate } = await client.request<{ serviceCreate: { id: string } }>(RAILWAY_DOCUMENTS.serviceCreate, {
      input: { projectId, environmentId, name: names.serviceName },
    });
    const project = h.config.neon!.projectIds[0]!;
    const created = await neonApi(h, 'POST', `/projects/${project}/branches`, { branch: { name: names.databaseName } });
    expect(created.status).to.equal(201);
    const { branch } = (await created.json()) as { branch: { id: string } };
    return { service: serviceCreate.id, database: `${project}/${branch.id}`, names };
  },
  async serviceExists(h, id) {
    return h.railway!.services().some((s) => s.id === id);
  },
  async databaseNamed(h, name) {
    return h.config.neon!.projectIds.some((project) => h.neon!.branches(project).some((b) => b.branch.name === name));
  },
  async dropDatabase(h, branchId) {
    const [project, branch] = branchId.split('/');
    await h.neon!.idle(project!);
    expect((await neonApi(h, 'DELETE', `/projects/${project}/branches/${branch}`)).status).to.equal(200);
  },
  async cleanUp() {}, // the emulators drop what they made
};

function neonApi(h: Harness, method: string, pathname: string, body?: object): Promise<Response> {
  return fetch(`${h.neon!.url}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${h.neon!.apiKey}`, 'content-type': 'application/json' },
    ...(body && { body: JSON.stringify(body) }),
  });
}

/** Reconcile's audit rows (orphans deleted, incidents, drift corrected). */
async function reconcileAudit(h: Harness): Promise<{ action: string; instance_id: string | null; detail: Record<string, string> }[]> {
  const { rows } = await h.db.query("SELECT action, instance_id, detail FROM audit WHERE action LIKE 'reconcile.%' AND action <> 'reconcile.requested' ORDER BY id");
  return rows;
}

async function dryRun(h: Harness): Promise<ReconcileReport> {
  const response = await h.admin('/api/admin/reconcile?dryRun=true', { method: 'POST' });
  expect(response.status).to.equal(200);
  return (await response.json()) as ReconcileReport;
}

/** Acting runs asked for at once (the second finds the first's lock, or nothing left to do); answers the last report. */
async function runNow(h: Harness, times = 1): Promise<ReconcileReport> {
  // dryRun=false is the same as no dryRun.
  const answers = await Promise.all(Array.from({ length: times }, (_, i) => h.admin(`/api/admin/reconcile${i % 2 ? '?dryRun=false' : ''}`, { method: 'POST' })));
  for (const answer of answers) {
    expect(answer.status).to.equal(202);
    const { reconciling } = (await answer.json()) as { reconciling: string };
    const [queue, id] = reconciling.split('/');
    expect(queue).to.equal(QUEUES.fleet);
    await h.completedJob(QUEUES.fleet, id!);
  }
  const last = await h.admin('/api/admin/reconcile');
  expect(last.status).to.equal(200);
  const report = (await last.json()) as ReconcileReport;
  expect(report.dryRun).to.equal(false);
  return report;
}

/** Everything the providers hold of an instance, as the control plane would read it back. */
async function stateOf(h: Harness, view: InstanceView) {
  const { rows } = await h.db.query<{ service_id: string; branch_id: string }>('SELECT service_id, branch_id FROM instances WHERE id = $1', [view.instanceId]);
  const { service_id: serviceId, branch_id: branchId } = rows[0]!;
  return { serviceId, branchId, settings: await h.plane.ctx.compute.readSettings(serviceId) };
}

for (const backend of [LOCAL, CLOUD]) {
  describe(`the reconciler on ${backend.name}`, function () {
    this.timeout(180_000);
    let h: Harness;
    let live: InstanceView[] = [];
    let orphans: Awaited<ReturnType<Backend['makeOrphans']>> | undefined;
    let stray: { name: string; child: ChildProcess } | undefined;

    before(async () => {
      h = await startHarness({ ORPHAN_GRACE: '1s' }, backend.options);
      live = [];
      for (const email of ['ana@example.com', 'ben@example.com', 'cy@example.com']) {
        const created = await h.admin('/api/admin/provision', { method: 'POST', body: JSON.stringify({ email, plan: 'pro' }) });
        const { customerId } = (await created.json()) as { customerId: string };
        const view = await h.waitForStatus(customerId, ['active', 'failed'], 90_000);
        expect(view.status, JSON.stringify(view.failure)).to.equal('active');
        live.push(view);
      }
    });
    after(async () => {
      if (stray?.child.exitCode === null && stray.child.signalCode === null) stray.child.kill('SIGKILL');
      if (h && orphans) await backend.cleanUp(h, orphans.names);
      await h?.close();
    });

    if (backend === LOCAL) {
      it('answers 404 before any run has reported, 400 to a bad dryRun or another parameter, 401 without the token', async () => {
        const none = await h.admin('/api/admin/reconcile');
        expect(none.status).to.equal(404);
        expect(((await none.json()) as { error: string }).error).to.equal('not_found');
        for (const query of ['dryRun=yes', 'dryRun=', 'dryRun=true&dryRun=true', 'dryrun=true', 'dryRun=true&force=1']) {
          const response = await h.admin(`/api/admin/reconcile?${query}`, { method: 'POST' });
          expect(response.status, query).to.equal(400);
          expect(((await response.json()) as { error: string }).error).to.equal('invalid_request');
        }
        expect((await fetch(`${h.url}/api/admin/reconcile`)).status).to.equal(401);
        expect((await fetch(`${h.url}/api/admin/reconcile?dryRun=true`, { method: 'POST' })).status).to.equal(401);
        expect((await h.db.query('SELECT 1 FROM reconcile_reports')).rowCount, 'no run was started').to.equal(0);
      });
    }

    it('lists exactly the orphans in a dry run, deletes them after the grace with audit rows, and touches nothing of a live instance', async () => {
      const liveBefore = await Promise.all(live.map((v) => stateOf(h, v)));
      orphans = await backend.makeOrphans(h);
      stray = backend.strayProcess?.(h);
      const strayExit = stray && new Promise<void>((resolve) => stray!.child.once('exit', () => resolve()));
      const expected = [
        `database ${orphans.database} ${orphans.names.databaseName}`,
        `service ${orphans.service} ${orphans.names.serviceName}`,
        ...(stray ? [`service ${stray.name} ${stray.name}`] : []),
      ].sort();

      const dry = await dryRun(h);
      expect(dry.dryRun).to.equal(true);
      expect(dry.orphans.map((o) => `${o.kind} ${o.id} ${o.name}`).sort()).to.deep.equal(expected);
      expect(dry.orphans.every((o) => o.instanceId === null && o.outcome === 'waiting' && o.firstSeenAt === null)).to.equal(true);
      expect(dry.listed).to.deep.equal({ services: stray ? 5 : 4, databases: 4 });
      expect(dry.missing).to.deep.equal([]);
      expect(dry.duplicates).to.deep.equal([]);
      expect(dry.drift).to.deep.equal({ checked: 3, found: [] });
      // The dry run's report is the newest, from any process.
      expect(await (await h.admin('/api/admin/reconcile')).json()).to.deep.equal(dry);

      // The first acting run sees them first: nothing goes before the grace has passed since then.
      const first = await runNow(h);
      expect(first.orphans.map((o) => `${o.kind} ${o.id} ${o.outcome}`).sort()).to.deep.equal(expected.map((e) => `${e.split(' ').slice(0, 2).join(' ')} waiting`).sort());
      expect(await backend.serviceExists(h, orphans.service)).to.equal(true);
      expect(await backend.databaseNamed(h, orphans.names.databaseName)).to.equal(true);
      expect(await reconcileAudit(h)).to.deep.equal([]);

      const due = Math.max(...first.orphans.map((o) => Date.parse(o.dueAt)));
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now()) + 100));
      const second = await runNow(h, 2); // two at once: one acts, the other finds the lock or nothing left
      expect(second.orphans.every((o) => o.outcome === 'deleted') || second.orphans.length === 0).to.equal(true);

      expect(await backend.serviceExists(h, orphans.service)).to.equal(false);
      expect(await backend.databaseNamed(h, orphans.names.databaseName)).to.equal(false);
      await strayExit; // the stray runtime was stopped (else the test times out here)
      if (backend === LOCAL) {
        const { rowCount } = await h.db.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [orphans.names.databaseName]);
        expect(rowCount, 'its role').to.equal(0);
      }
      const audit = await reconcileAudit(h);
      expect(audit.map((a) => `${a.action} ${a.detail.kind} ${a.detail.id} ${a.instance_id}`).sort()).to.deep.equal(
        expected.map((e) => `reconcile.orphan_deleted ${e.split(' ').slice(0, 2).join(' ')} null`).sort(),
      );

      // The live instances: the same service and database, holding the same settings, and still answering.
      expect(await Promise.all(live.map((v) => stateOf(h, v)))).to.deep.equal(liveBefore);
      for (const [i, state] of liveBefore.entries()) {
        expect(await backend.serviceExists(h, state.serviceId)).to.equal(true);
        expect(await backend.databaseNamed(h, instanceResources(live[i]!.workspaceId).databaseName)).to.equal(true);
      }
      for (const view of live) expect((await fetch(`${view.accessUrl}/health`)).status).to.equal(200);
      expect((await dryRun(h)).orphans).to.deep.equal([]);
    });

    it('configures a drifted service for its plan again, with an audit row', async () => {
      const { serviceId, settings } = await stateOf(h, live[1]!);
      // Changed behind the control plane's back, as someone in the provider's dashboard would.
      await h.plane.ctx.compute.configure(serviceId, { variables: { ...settings!.variables, PLAN: 'team', MESSAGE_LIMIT: '1' }, limits: { cpu: 2, memoryMb: 2048, pidsLimit: 512 } });

      const dry = await dryRun(h);
      expect(dry.drift.found.map((d) => `${d.instanceId} ${d.variables.join(',')} ${d.plan?.held} ${d.outcome}`)).to.deep.equal([
        `${live[1]!.instanceId} MESSAGE_LIMIT,PLAN team would-correct`,
      ]);
      expect(dry.drift.found[0]!.limits).to.deep.equal({ held: { cpu: 2, memoryMb: 2048 }, wanted: { cpu: 1, memoryMb: 1024 } });

      const report = await runNow(h);
      expect(report.drift.found.map((d) => `${d.instanceId} ${d.outcome}`)).to.deep.equal([`${live[1]!.instanceId} corrected`]);
      expect((await stateOf(h, live[1]!)).settings).to.deep.equal(settings);
      const [row] = (await reconcileAudit(h)).filter((a) => a.action === 'reconcile.drift_corrected');
      expect(row!.instance_id).to.equal(live[1]!.instanceId);
      expect(row!.detail).to.deep.include({ serviceId, variables: ['MESSAGE_LIMIT', 'PLAN'] });
      // Redeployed on what its plan sets.
      await waitUntil(async () => (await fetch(`${live[1]!.accessUrl}/health`).catch(() => undefined))?.status === 200, 60_000);
      expect((await dryRun(h)).drift.found).to.deep.equal([]);
    });

    it('raises one incident for an active instance whose database was dropped, and recreates nothing', async () => {
      const { branchId } = await stateOf(h, live[0]!);
      const name = instanceResources(live[0]!.workspaceId).databaseName;
      await backend.dropDatabase(h, branchId);
      const slackBefore = h.slack.posts.length;

      const first = await runNow(h);
      expect(first.missing.map((m) => `${m.instanceId} ${m.kind} ${m.expected} ${m.outcome}`)).to.deep.equal([`${live[0]!.instanceId} database ${branchId} raised`]);
      const second = await runNow(h);
      expect(second.missing.map((m) => m.outcome)).to.deep.equal(['raised-before']);

      const incidents = await waitForIncidents(h, live[0]!.instanceId, 'reconcile.missing');
      expect(incidents).to.have.length(1);
      const posts = h.slack.posts.slice(slackBefore).filter((p) => (p.text ?? '').includes('ana@example.com'));
      expect(posts).to.have.length(1);
      expect(posts[0]!.text).to.match(/An active instance is missing its database/);
      expect(h.smtp.messages.filter((m) => m.to.includes('ops@clawdbot.test') && m.text.includes(branchId))).to.have.length(1);

      // Nothing recreated: no database under its name, and the instance still records the one that was dropped.
      expect(await backend.databaseNamed(h, name)).to.equal(false);
      expect((await stateOf(h, live[0]!)).branchId).to.equal(branchId);
      expect(second.orphans).to.deep.equal([]);
    });

    if (backend === LOCAL) {
      it('runs on its schedule (RECONCILE_INTERVAL), each run a job of the fleet queue', async () => {
        const { rows } = await h.db.query<{ n: string }>('SELECT count(*) AS n FROM reconcile_reports WHERE NOT dry_run');
        await h.plane.ctx.jobs.scheduleFleet({ monitor: 0, reconcile: 200 }); // as a worker does at start
        try {
          await waitUntil(async () => {
            const now = await h.db.query<{ n: string }>('SELECT count(*) AS n FROM reconcile_reports WHERE NOT dry_run');
            return Number(now.rows[0]!.n) >= Number(rows[0]!.n) + 2;
          }, 30_000);
        } finally {
          await h.plane.ctx.jobs.scheduleFleet({ monitor: 0, reconcile: 0 });
        }
        const scheduled = await h.plane.ctx.queues.get(QUEUES.fleet).getJobs(['completed']);
        expect(scheduled.some((j) => j.name === 'reconcile' && j.id!.startsWith('repeat:'))).to.equal(true);
      });
    }
  });
}
