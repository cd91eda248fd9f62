-- When a cancellation of a provisioning under way began: from then on no further step of the flow runs (a step
-- already running finishes), so nothing deploys or issues a key while the cancel job waits for the running one.
ALTER TABLE instances ADD COLUMN cancel_requested_at timestamptz;
