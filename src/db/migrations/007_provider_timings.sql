-- How long providers took (deployments, by compute provider), so steps poll near when a provider is likely done
-- instead of backing off from zero. pending_ms: the last time it was seen still working; ready_ms: when it was seen
-- done (the true time lies between). Only the newest rows of each kind are kept.
CREATE TABLE provider_timings (
  id bigserial PRIMARY KEY,
  kind text NOT NULL,
  pending_ms integer NOT NULL,
  ready_ms integer NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_timings_kind_idx ON provider_timings (kind, id DESC);
