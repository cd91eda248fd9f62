-- The rest of a subscription's life: cancelled (service stopped, key revoked), archived (database and workspace
-- exported, then deleted), purged (archive and personal data deleted; Stripe ids and the audit trail stay).
ALTER TABLE instances DROP CONSTRAINT instances_status_check;
ALTER TABLE instances ADD CONSTRAINT instances_status_check
  CHECK (status IN ('provisioning', 'active', 'failed', 'abandoned', 'suspended', 'cancelled', 'archived', 'purged'));
ALTER TABLE instances
  ADD COLUMN cancelled_at timestamptz,
  ADD COLUMN archive_at timestamptz,
  ADD COLUMN purge_at timestamptz,
  ADD COLUMN archived_at timestamptz,
  ADD COLUMN purged_at timestamptz,
  -- when Stripe first reported the subscription past_due or unpaid (the suspension grace runs from here)
  ADD COLUMN past_due_since timestamptz,
  -- how many times the instance was provisioned (a reactivation runs the flow again, under new job ids)
  ADD COLUMN generation integer NOT NULL DEFAULT 1;

CREATE TABLE archives (
  instance_id uuid PRIMARY KEY REFERENCES instances(id),
  location text NOT NULL,
  size_bytes bigint NOT NULL,
  sha256 text NOT NULL,
  -- rows exported per table, checked again when the archive is read back
  row_counts jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  verified_at timestamptz,
  deleted_at timestamptz
);
