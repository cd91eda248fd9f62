-- Placing a customer in a Neon project, done by the database in one call. Placements run one at a time under an
-- advisory lock; done from the client, the lock was held over five round trips, each waiting for a busy worker and a
-- busy server, and a burst of sign-ups queued behind it (about 1 s each at 500 at once on the development machine).
-- In a function, the lock is held for the statements alone. See src/db/neonPlacements.ts for what they mean.

-- The branch limit in force in a project: the configured one, or the lower one Neon enforced when it last refused a
-- branch there (trusted for an hour).
CREATE FUNCTION neon_branch_limit(refused_at timestamptz, refused_limit integer, configured integer) RETURNS integer
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN refused_at > now() - interval '1 hour' THEN LEAST(refused_limit, configured) ELSE configured END
$$;

-- One more branch in the project of `projects` with the most room (ties: the first in `projects`), and the 80 %
-- alert it sets off, if any: {"projectId": …, "alerts": [...]}, or NULL when every project is full. The caller holds
-- the placement lock.
CREATE FUNCTION neon_take_room(projects text[], configured integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  best record;
  crosses boolean;
BEGIN
  SELECT p.project_id, p.branches, p.alerted, p.crossings,
         neon_branch_limit(p.refused_at, p.refused_limit, configured) AS lim
    INTO best
    FROM neon_projects p
   WHERE p.project_id = ANY (projects)
     AND neon_branch_limit(p.refused_at, p.refused_limit, configured) > p.branches
   ORDER BY neon_branch_limit(p.refused_at, p.refused_limit, configured) - p.branches DESC,
            array_position(projects, p.project_id)
   LIMIT 1;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  -- The 80 % line, crossed by this branch: alert once per crossing (re-armed below 75 %, see release).
  crosses := NOT best.alerted AND (best.branches + 1) * 5 >= best.lim * 4;
  UPDATE neon_projects
     SET branches = branches + 1, alerted = alerted OR crosses, crossings = crossings + crosses::int
   WHERE project_id = best.project_id;
  RETURN jsonb_build_object(
    'projectId', best.project_id,
    'alerts', CASE WHEN crosses THEN jsonb_build_array(jsonb_build_object(
      'key', 'neon-capacity/' || best.project_id || '/' || (best.crossings + 1),
      'projectId', best.project_id,
      'branches', best.branches + 1,
      'limit', best.lim)) ELSE '[]'::jsonb END);
END
$$;

-- The name's placement: where it was placed before, else a new one recorded now, else (every project full)
-- {"full": [each project's load], "alerts": []}.
CREATE FUNCTION neon_place(placement_name text, projects text[], configured integer, lock_id bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  earlier record;
  taken jsonb;
BEGIN
  PERFORM pg_advisory_xact_lock(lock_id);
  SELECT project_id, alerts INTO earlier FROM neon_placements WHERE name = placement_name;
  IF FOUND THEN
    RETURN jsonb_build_object('projectId', earlier.project_id, 'alerts', earlier.alerts);
  END IF;
  taken := neon_take_room(projects, configured);
  IF taken IS NULL THEN
    RETURN jsonb_build_object('alerts', '[]'::jsonb, 'full', (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
               'projectId', p.project_id,
               'branches', p.branches,
               'limit', neon_branch_limit(p.refused_at, p.refused_limit, configured))), '[]'::jsonb)
        FROM neon_projects p WHERE p.project_id = ANY (projects)));
  END IF;
  INSERT INTO neon_placements (name, project_id, alerts) VALUES (placement_name, taken ->> 'projectId', taken -> 'alerts');
  RETURN taken;
END
$$;
