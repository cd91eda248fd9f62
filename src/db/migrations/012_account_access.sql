-- A customer's way back to their account page: single-use sign-in links (emailed, valid minutes) and the sessions
-- they open. Only SHA-256 hashes of the tokens are kept: a copy of this table opens no account.
CREATE TABLE sign_in_links (
  token_hash text PRIMARY KEY,
  customer_id uuid NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_links_expires_idx ON sign_in_links (expires_at);

CREATE TABLE account_sessions (
  token_hash text PRIMARY KEY,
  customer_id uuid NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_sessions_customer_idx ON account_sessions (customer_id);
