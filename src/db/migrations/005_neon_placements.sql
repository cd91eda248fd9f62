-- Neon placement by capacity (src/db/neonPlacements.ts): how full each Neon project is, which project each
-- customer's branch was placed in (recorded before the branch is made), and our turns to send Neon a mutation.

CREATE TABLE neon_projects (
  project_id text PRIMARY KEY,
  -- Branches in the project as counted here: Neon's own count when the project was first used, then one more per
  -- placement and one fewer per branch deleted. Corrected from Neon's count whenever Neon refuses a branch.
  branches integer NOT NULL CHECK (branches >= 0),
  counted_at timestamptz NOT NULL DEFAULT now(),
  -- When Neon last refused a branch here for its branch limit, and the branches it then held: the limit it enforces
  -- (below NEON_BRANCH_LIMIT on a smaller plan). Trusted for an hour, then NEON_BRANCH_LIMIT is tried again.
  refused_at timestamptz,
  refused_limit integer,
  -- The 80 % alert: raised for the current crossing (re-armed once the project is below 75 % again), and how many
  -- crossings there have been (each one's incident is keyed by it, so it is raised once).
  alerted boolean NOT NULL DEFAULT false,
  crossings integer NOT NULL DEFAULT 0,
  -- Neon runs one operation at a time per project (it answers 423 meanwhile): the end of the last turn booked here.
  free_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE neon_placements (
  -- The customer's branch and role name (claw_<hex>).
  name text PRIMARY KEY,
  project_id text NOT NULL REFERENCES neon_projects (project_id),
  placed_at timestamptz NOT NULL DEFAULT now(),
  -- The capacity alerts this placement set off, handed back on a re-run so the step can still raise them.
  alerts jsonb NOT NULL DEFAULT '[]'
);

-- An incident raised at most once per key (e.g. one per project and 80 % crossing), however often it is reported.
CREATE UNIQUE INDEX audit_incident_key_idx ON audit ((detail ->> 'incidentKey')) WHERE detail ? 'incidentKey';
