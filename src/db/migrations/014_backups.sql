-- Backups of customers' databases (scheduled, on demand, and before a plan change, a restore or a rollout), in the
-- archive format and store of cancellation archives. state: running (being taken), verified (read back whole: same
-- bytes, same rows), failed (error says why; nothing was deleted for it), deleted (by retention; deleted_at).
CREATE TABLE backups (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  instance_id uuid NOT NULL REFERENCES instances(id),
  reason text NOT NULL CHECK (reason IN ('scheduled', 'on-demand', 'plan-change', 'restore', 'rollout')),
  state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'verified', 'failed', 'deleted')),
  location text,
  size_bytes bigint,
  sha256 text,
  row_counts jsonb,
  error text,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  duration_ms integer,
  deleted_at timestamptz
);
CREATE INDEX backups_instance_idx ON backups (instance_id, started_at DESC);

-- Restore runs: the backup restored, the backup of the live data taken first, the fresh database restored into.
-- state: running, succeeded (the instance serves the restored data), failed (the previous database kept serving).
-- At most one running restore per instance.
CREATE TABLE restores (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  instance_id uuid NOT NULL REFERENCES instances(id),
  backup_id uuid NOT NULL REFERENCES backups(id),
  state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'succeeded', 'failed')),
  pre_backup_id uuid REFERENCES backups(id),
  database_name text,
  error text,
  requested_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz,
  duration_ms integer
);
CREATE INDEX restores_instance_idx ON restores (instance_id, requested_at DESC);
CREATE UNIQUE INDEX restores_one_running ON restores (instance_id) WHERE state = 'running';
