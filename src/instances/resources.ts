/**
 * The names of what an instance is made of. The workspace id is derived from the first subscription, and the service
 * and database names from it: every retry finds what an earlier try made, and a reactivated customer on a new
 * subscription keeps them.
 */
import { createHash } from 'node:crypto';
import type { DatabaseRef } from '../providers/types.ts';

export function workspaceIdFor(subscriptionRef: string): string {
  return `ws-${createHash('sha256').update(subscriptionRef).digest('hex').slice(0, 16)}`;
}

export function instanceResources(workspaceId: string): { serviceName: string; databaseName: string } {
  const slug = workspaceId.replace(/^ws-/, '');
  return { serviceName: `claw-${slug}`, databaseName: `claw_${slug}` };
}

/** The fresh database a restore run loads a backup into, `claw_<slug>_r<8 hex of the run>`: one per run. */
export function restoreDatabaseName(workspaceId: string, restoreId: string): string {
  return `${instanceResources(workspaceId).databaseName}_r${restoreId.replace(/-/g, '').slice(0, 8).toLowerCase()}`;
}

/**
 * The workspace a service or database name was derived from (instanceResources backwards, a restore's database
 * too), or undefined for a name not of our making: only names of these exact shapes are ever the reconciler's to touch.
 */
export function workspaceOfResource(kind: 'service' | 'database', name: string): string | undefined {
  if (kind === 'database') {
    const restored = /^(claw_[0-9a-f]{16})_r[0-9a-f]{8}$/.exec(name)?.[1];
    if (restored) return workspaceOfResource(kind, restored);
  }
  const slug = /^claw[-_]([0-9a-f]{16})$/.exec(name)?.[1];
  if (!slug) return undefined;
  const names = instanceResources(`ws-${slug}`);
  return (kind === 'service' ? names.serviceName : names.databaseName) === name ? `ws-${slug}` : undefined;
}

/**
 * The instance's service and database, by the ids recorded on it or else by their derived names: a step may have
 * created a resource and died before recording it.
 */
export function resourceRefs(instance: {
  workspace_id: string;
  service_id: string | null;
  branch_id: string | null;
  database_name: string | null;
  database_role: string | null;
}): { serviceId: string; database: DatabaseRef } {
  const names = instanceResources(instance.workspace_id);
  return {
    serviceId: instance.service_id ?? names.serviceName,
    database: {
      branchId: instance.branch_id ?? names.databaseName,
      databaseName: instance.database_name ?? names.databaseName,
      roleName: instance.database_role ?? names.databaseName,
    },
  };
}
