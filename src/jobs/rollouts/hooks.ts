/**
 * What runs before a rollout changes an instance (its update, not its rollback). A no-op here: the place for a
 * backup to be taken before every rollout change. It runs holding the instance's lifecycle lock; a throw fails that
 * instance's update, which counts towards the rollout's maxFailures.
 */
import type { InstanceWithCustomer } from '../../db/instances.ts';
import type { JobContext } from '../context.ts';

export async function beforeRolloutChange(_ctx: JobContext, _instance: InstanceWithCustomer): Promise<void> {
  // Nothing yet.
}
