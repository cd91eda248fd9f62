-- The reconciler (src/jobs/fleet/reconcile.ts): what it remembers between runs.

-- Resources under our naming that no live instance owns, from the run that first saw them: one is deleted only once
-- ORPHAN_GRACE has passed since first_seen_at. A row goes when its resource is deleted, gone, or owned again.
-- kind: service or database; provider: the provider's kind (local, railway, neon); resource_id: the provider's id
-- (a Railway service id, a local service or database name, <project>/<branch> on Neon).
CREATE TABLE reconcile_orphans (
  kind text NOT NULL CHECK (kind IN ('service', 'database')),
  provider text NOT NULL,
  resource_id text NOT NULL,
  name text NOT NULL,
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, provider, resource_id)
);

-- When each active instance's service settings were last compared with its plan: each run checks a bounded number,
-- those checked longest ago first.
CREATE TABLE reconcile_drift_checks (
  instance_id uuid PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
  checked_at timestamptz NOT NULL
);

-- The newest reports (dry runs included), so GET /api/admin/reconcile answers from any process.
CREATE TABLE reconcile_reports (
  id bigserial PRIMARY KEY,
  dry_run boolean NOT NULL,
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT now(),
  report jsonb NOT NULL
);
