-- Fleet settings and rollouts. A generation is one immutable set of the settings every runtime shares (runtime
-- version, model, prompt budget, plan definitions, and the control plane's own secrets, sealed under SECRETS_KEY).
-- Equal settings share a row: the digest covers the non-secret values and an HMAC of the secrets (no secret in it).
CREATE TABLE fleet_generations (
  id serial PRIMARY KEY,
  runtime_version text NOT NULL,
  settings jsonb NOT NULL,
  secrets_ciphertext bytea NOT NULL,
  secrets_iv bytea NOT NULL,
  secrets_tag bytea NOT NULL,
  digest text NOT NULL UNIQUE,
  source text NOT NULL CHECK (source IN ('config', 'rollout')),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- The one current generation: what every configuration of a service uses (new provisions, resizes, reactivations).
CREATE TABLE fleet_current (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  generation_id integer NOT NULL REFERENCES fleet_generations(id),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- What each instance's service was last configured with. Instances from before this migration get the first
-- generation bootstrapped (they run what the configuration said then).
ALTER TABLE instances
  ADD COLUMN runtime_version text,
  ADD COLUMN settings_generation integer REFERENCES fleet_generations(id);

CREATE TABLE rollouts (
  id serial PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('running', 'paused', 'completed', 'halted', 'aborted', 'rolling_back')),
  -- While rolling back: how it ends (halted: past maxFailures; aborted: an operator's abort).
  ends_as text CHECK (ends_as IN ('halted', 'aborted')),
  target_generation integer NOT NULL REFERENCES fleet_generations(id),
  previous_generation integer NOT NULL REFERENCES fleet_generations(id),
  selector jsonb NOT NULL,
  batch_size integer NOT NULL CHECK (batch_size > 0),
  canary integer NOT NULL CHECK (canary >= 0),
  max_failures integer NOT NULL CHECK (max_failures >= 0),
  failures integer NOT NULL DEFAULT 0,
  created_by text NOT NULL,
  halt_reason text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
-- One rollout at a time.
CREATE UNIQUE INDEX rollouts_one_open ON rollouts ((true)) WHERE state IN ('running', 'paused', 'rolling_back');

CREATE TABLE rollout_instances (
  rollout_id integer NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
  instance_id uuid NOT NULL REFERENCES instances(id),
  batch integer NOT NULL,
  position integer NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'updating', 'healthy', 'failed', 'rolled_back', 'skipped')),
  -- Rolling back a changed instance: running, done, or failed (then detail says why).
  rollback text CHECK (rollback IN ('running', 'done', 'failed')),
  from_generation integer REFERENCES fleet_generations(id),
  from_version text,
  started_at timestamptz,
  finished_at timestamptz,
  detail text,
  PRIMARY KEY (rollout_id, instance_id),
  UNIQUE (rollout_id, position)
);
