-- How a new API key reaches its customer: when the welcome email went out and when the welcome page showed the key
-- (once). The sealed key is deleted when both have happened, or when the reveal window after the email has passed.
CREATE TABLE key_handovers (
  instance_id uuid PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
  emailed_at timestamptz,
  revealed_at timestamptz
);
