-- What the health monitor last saw of each active instance (one row per instance, written by each probe).
-- state: healthy (GET /health answered 200), degraded (answered, not 200), down (no answer, or the provider says the
-- process or deployment is not running). failures: consecutive failed probes; restarts: when the monitor restarted
-- the instance within the last hour; incident_id: the audit row of the open down incident (its recovery notice is
-- sent when the instance is healthy again); crash_loop: restarts stopped until an operator acts or it recovers.
CREATE TABLE instance_health (
  instance_id uuid PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
  state text NOT NULL CHECK (state IN ('healthy', 'degraded', 'down')),
  checked_at timestamptz NOT NULL,
  since timestamptz NOT NULL,
  last_error text,
  failures integer NOT NULL DEFAULT 0,
  restarts timestamptz[] NOT NULL DEFAULT '{}',
  restart_count integer NOT NULL DEFAULT 0,
  incident_id bigint,
  crash_loop boolean NOT NULL DEFAULT false
);
CREATE INDEX instance_health_state_idx ON instance_health (state);

-- Which worker process supervises a local runtime, until when (renewed while it lives). A runtime whose lease ran
-- out (its worker stopped or died) is adopted by a worker that is alive; the lease makes sure only one does.
ALTER TABLE local_services ADD COLUMN owner text, ADD COLUMN lease_until timestamptz;
