-- The generation the control plane's configuration described when a worker last made it current. A start with the
-- same configuration keeps what is current (a completed rollout's version or settings); a start with a changed one
-- carries those rollout changes over onto it instead of dropping them.
ALTER TABLE fleet_current ADD COLUMN config_generation_id integer REFERENCES fleet_generations(id);
