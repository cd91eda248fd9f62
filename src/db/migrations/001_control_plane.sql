-- Control-plane schema: who the customers are, what they pay for, what runs for them, and what happened.

CREATE TABLE customers (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  stripe_customer_id text UNIQUE,
  email text,
  name text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  customer_id uuid NOT NULL REFERENCES customers(id),
  -- Stripe's subscription id, or comp_<uuid> for a customer provisioned by an operator.
  stripe_subscription_id text NOT NULL UNIQUE,
  price_id text,
  -- null when the price is not one this product sells
  plan text,
  status text NOT NULL,
  comped boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE instances (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  subscription_id uuid NOT NULL UNIQUE REFERENCES subscriptions(id),
  customer_id uuid NOT NULL REFERENCES customers(id),
  workspace_id text NOT NULL UNIQUE,
  plan text,
  status text NOT NULL CHECK (status IN ('provisioning', 'active', 'failed', 'abandoned')),
  compute_provider text NOT NULL,
  database_provider text NOT NULL,
  service_id text,
  access_url text,
  branch_id text,
  database_name text,
  database_role text,
  api_key_hash text,
  api_key_label text,
  failed_step text,
  -- queue/job id of the failed job, for an operator's retry
  failed_job text,
  failure_reason text,
  failure_alerted_at timestamptz,
  provision_started_at timestamptz NOT NULL DEFAULT now(),
  active_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instances_customer_idx ON instances(customer_id);

-- The steps ledger: one row per provisioning step per instance.
CREATE TABLE steps (
  instance_id uuid NOT NULL REFERENCES instances(id),
  name text NOT NULL,
  state text NOT NULL CHECK (state IN ('running', 'waiting', 'completed', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  started_at timestamptz,
  finished_at timestamptz,
  error text,
  result jsonb,
  PRIMARY KEY (instance_id, name)
);

CREATE TABLE stripe_events (
  id text PRIMARY KEY,
  type text NOT NULL,
  stripe_created timestamptz NOT NULL,
  livemode boolean NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  handled boolean NOT NULL,
  payload jsonb NOT NULL,
  -- set when acting on the event failed for good before any instance existed to record it (the audit row says why)
  failure_alerted_at timestamptz
);

-- Secrets encrypted with AES-256-GCM under SECRETS_KEY; owner names what they belong to (instance/<id>, ...).
CREATE TABLE secrets (
  owner text NOT NULL,
  name text NOT NULL,
  ciphertext bytea NOT NULL,
  iv bytea NOT NULL,
  tag bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (owner, name)
);

CREATE TABLE audit (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  actor text NOT NULL,
  action text NOT NULL,
  customer_id uuid,
  instance_id uuid,
  detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_customer_idx ON audit(customer_id, at);

-- What the local compute provider runs: one runtime process per service, restored when the worker restarts.
-- Its variables (which hold the database URL) are kept in secrets under local-service/<name>.
CREATE TABLE local_services (
  name text PRIMARY KEY,
  port integer UNIQUE,
  desired_state text NOT NULL CHECK (desired_state IN ('running', 'stopped')),
  pid integer,
  deployment_id text,
  limits jsonb NOT NULL DEFAULT '{}',
  deployed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
