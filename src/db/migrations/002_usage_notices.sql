-- Usage notices from customers' runtimes (80 % and 100 % of the month's messages): one email per instance,
-- month and threshold, however often a runtime sends the notice.
CREATE TABLE usage_notices (
  instance_id uuid NOT NULL REFERENCES instances(id),
  month text NOT NULL,
  threshold integer NOT NULL CHECK (threshold IN (80, 100)),
  used integer NOT NULL,
  message_limit integer NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (instance_id, month, threshold)
);
