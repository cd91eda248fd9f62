/**
 * What runs before a rollout changes an instance (its update, not its rollback): a verified backup of its database,
 * so the data it had before the new version or settings touched it can be restored. It runs holding the instance's
 * lifecycle lock; a backup that cannot be taken or verified fails that instance's update, which counts towards the
 * rollout's maxFailures (the instance is left as it was).
 */
import type { InstanceWithCustomer } from '../../db/instances.ts';
import { backupNow } from '../../operations/backup.ts';
import type { JobContext } from '../context.ts';

export async function beforeRolloutChange(ctx: JobContext, instance: InstanceWithCustomer): Promise<void> {
  await backupNow(ctx, instance, 'rollout');
}
