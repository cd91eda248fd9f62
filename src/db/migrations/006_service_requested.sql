-- When create-service asked the compute provider for the instance's service. Set before the request, so a run that
-- finds it set but no service_id knows an earlier run may have made the service and died before recording its id:
-- only then is the service looked up by name (on Railway that means listing the project's services). Cleared with
-- service_id when the service is deleted.
ALTER TABLE instances ADD COLUMN service_requested_at timestamptz;
-- Instances whose create-service had already started before this column existed may have such a service.
UPDATE instances i SET service_requested_at = now()
  WHERE i.service_id IS NULL AND EXISTS (SELECT 1 FROM steps s WHERE s.instance_id = i.id AND s.name = 'create-service');
