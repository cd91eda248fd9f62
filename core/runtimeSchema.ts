/**
 * The customer database's schema, as numbered migrations. Applied by the control plane right after it creates a
 * customer database and by the runtime at every start; both may run at once, so the work happens in one
 * transaction under an advisory lock, taken only when a read finds a migration missing (a runtime starting on an
 * up-to-date database pays one read and waits for no one). Table and column names are a contract with the control plane, which seeds
 * workspace_files and api_keys.
 */
import pg from 'pg';

/** One connection (pg.Client or pg.PoolClient): the migration transaction must stay on it. */
export interface SchemaConnection {
  query(sql: string, params?: unknown[]): Promise<unknown>;
}

/** Arbitrary, fixed key of the transaction-level advisory lock that serializes schema changes. */
const SCHEMA_LOCK_KEY = 4_872_301_117;

const MIGRATIONS: ReadonlyArray<{ version: number; sql: string }> = [
  {
    version: 1,
    sql: `
      -- array_to_string is only STABLE, which a generated column refuses; for text[] its result never changes.
      CREATE FUNCTION memory_search_document(content text, tags text[]) RETURNS tsvector
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT to_tsvector('english'::regconfig, content || ' ' || array_to_string(tags, ' ')) $$;

      CREATE TABLE memories (
        id bigserial PRIMARY KEY,
        content text NOT NULL,
        tags text[] NOT NULL DEFAULT '{}',
        source text,
        created_at timestamptz NOT NULL DEFAULT now(),
        search tsvector GENERATED ALWAYS AS (memory_search_document(content, tags)) STORED
      );
      CREATE INDEX memories_search_idx ON memories USING gin (search);
      CREATE INDEX memories_tags_idx ON memories USING gin (tags);

      CREATE TABLE conversations (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        title text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE conversation_messages (
        id bigserial PRIMARY KEY,
        conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        role text NOT NULL CHECK (role IN ('user', 'assistant')),
        content text NOT NULL,
        input_tokens integer,
        output_tokens integer,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX conversation_messages_conversation_idx ON conversation_messages (conversation_id, id);

      CREATE TABLE usage_tracking (
        day date PRIMARY KEY,
        messages integer NOT NULL DEFAULT 0,
        input_tokens bigint NOT NULL DEFAULT 0,
        output_tokens bigint NOT NULL DEFAULT 0
      );

      CREATE TABLE workspace_files (
        path text PRIMARY KEY,
        content text NOT NULL,
        sha256 text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      );

      CREATE TABLE api_keys (
        key_hash text PRIMARY KEY,
        label text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
      );
    `,
  },
  {
    version: 2,
    sql: `
      -- Where a conversation came from: the API, an inbound webhook (webhook:<source>) or the heartbeat.
      ALTER TABLE conversations ADD COLUMN source text NOT NULL DEFAULT 'api';

      -- Skills: a row only for a built-in skill the customer switched off or on, and for each custom skill.
      CREATE TABLE skills (
        name text PRIMARY KEY,
        enabled boolean NOT NULL DEFAULT true,
        custom boolean NOT NULL DEFAULT false,
        description text,
        content text,
        updated_at timestamptz NOT NULL DEFAULT now()
      );

      -- Inbound webhook sources. hmac: the shared secret itself (needed to compute signatures);
      -- bearer: the SHA-256 of the token.
      CREATE TABLE webhook_sources (
        source text PRIMARY KEY,
        scheme text NOT NULL CHECK (scheme IN ('hmac', 'bearer')),
        secret text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE webhook_deliveries (
        id bigserial PRIMARY KEY,
        source text NOT NULL,
        delivery_id text NOT NULL,
        payload jsonb NOT NULL,
        status text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'processed', 'failed')),
        result text,
        error text,
        conversation_id uuid,
        received_at timestamptz NOT NULL DEFAULT now(),
        processed_at timestamptz,
        UNIQUE (source, delivery_id)
      );

      -- Set by the control plane while the subscription's payment is overdue: keys are refused with 402.
      CREATE TABLE account_status (
        id boolean PRIMARY KEY DEFAULT true CHECK (id),
        suspended_reason text,
        updated_at timestamptz NOT NULL DEFAULT now()
      );

      -- Usage notices sent to the control plane: once per month and threshold (80, 100).
      CREATE TABLE usage_notices (
        month text NOT NULL,
        threshold integer NOT NULL,
        used integer NOT NULL,
        sent_at timestamptz,
        PRIMARY KEY (month, threshold)
      );
    `,
  },
  {
    version: 3,
    sql: `
      -- OAuth connections to the customer's accounts (gmail, calendar, github). Tokens are sealed with the
      -- runtime's CONNECTIONS_KEY (AES-256-GCM, bound to the service and field): this table alone opens nothing.
      CREATE TABLE connections (
        service text PRIMARY KEY,
        account text,
        scopes text[] NOT NULL DEFAULT '{}',
        access_token_sealed text NOT NULL,
        refresh_token_sealed text,
        expires_at timestamptz,
        connected_at timestamptz NOT NULL DEFAULT now(),
        refreshed_at timestamptz
      );
      -- An authorization under way: the SHA-256 of its state, which the provider's redirect brings back once.
      CREATE TABLE connection_states (
        state_hash text PRIMARY KEY,
        service text NOT NULL,
        redirect_uri text NOT NULL,
        expires_at timestamptz NOT NULL
      );
      -- An acting tool's call waiting for the customer's confirmation in a later message of the same conversation.
      -- user_messages: the customer messages stored in the conversation when it was recorded (the turn it belongs to).
      CREATE TABLE pending_actions (
        id text PRIMARY KEY,
        conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        tool text NOT NULL,
        input jsonb NOT NULL,
        input_hash text NOT NULL,
        user_messages integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        used_at timestamptz
      );
    `,
  },
  {
    version: 4,
    sql: `
      -- The SHA-256 of each inbound delivery's raw body: one body is accepted under one delivery id within five
      -- minutes, so a captured delivery does not come back under a new id.
      ALTER TABLE webhook_deliveries ADD COLUMN body_sha256 text;
      CREATE INDEX webhook_deliveries_body_idx ON webhook_deliveries (source, body_sha256, received_at) WHERE body_sha256 IS NOT NULL;
    `,
  },
];

export async function applyRuntimeSchema(db: SchemaConnection): Promise<void> {
  if (db instanceof pg.Pool) {
    throw new Error('applyRuntimeSchema needs a single connection (pg.Client or PoolClient), not a pg.Pool');
  }
  if (await upToDate(db)) return;
  // Two round trips whatever the number of migrations: the lock and what is applied, then what is missing and the
  // commit (simple-protocol queries of several statements; every value in them is a constant of this module).
  try {
    const results = (await db.query(`BEGIN;
      SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_KEY});
      CREATE TABLE IF NOT EXISTS runtime_migrations (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
      );
      SELECT version FROM runtime_migrations`)) as unknown as pg.QueryResult<{ version: number }>[];
    const applied = new Set(results.at(-1)!.rows.map((row) => row.version));
    const missing = MIGRATIONS.filter((migration) => !applied.has(migration.version));
    await db.query(
      [...missing.map((m) => `${m.sql}\n;\nINSERT INTO runtime_migrations (version) VALUES (${Number(m.version)})`), 'COMMIT'].join(';\n'),
    );
  } catch (err) {
    // A broken connection fails the rollback too; the original error is the one worth reporting.
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Whether every migration is applied already; false when the database has none (no migrations table yet). */
async function upToDate(db: SchemaConnection): Promise<boolean> {
  try {
    const { rows } = (await db.query('SELECT version FROM runtime_migrations')) as pg.QueryResult<{ version: number }>;
    const applied = new Set(rows.map((row) => row.version));
    return MIGRATIONS.every((migration) => applied.has(migration.version));
  } catch (err) {
    if ((err as { code?: string }).code === UNDEFINED_TABLE) return false;
    throw err;
  }
}

const UNDEFINED_TABLE = '42P01';
