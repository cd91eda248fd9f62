-- Worker processes that supervise local runtimes, each alive while its lease is renewed. A worker that stops hands its
-- runtimes over (leaves them running) when another one is alive, and stops them when it is the last.
CREATE TABLE local_supervisors (
  id text PRIMARY KEY,
  lease_until timestamptz NOT NULL
);
-- How a local runtime last ended while its supervisor watched (pid is then NULL until it is started again): what the
-- health monitor tells operators. A runtime whose supervisor left while it ran keeps its pid, so it is adopted.
ALTER TABLE local_services ADD COLUMN exited_at timestamptz, ADD COLUMN exit_detail text;
