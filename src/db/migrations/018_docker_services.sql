-- The Docker compute provider's services: one container per service, found on the engine by its labels. What must
-- outlive a container (it is made anew at every deploy) is kept here: the port its runtime is published on (the
-- customer's access URL names it), the image and the plan's limits. Its variables are sealed in secrets.
CREATE TABLE docker_services (
  name text PRIMARY KEY,
  port integer NOT NULL UNIQUE,
  image text,
  limits jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);
