/** Keeps TOOLS.md's "Connected now" section true: rewritten after every connection made or removed. */
import type { Feature } from '../../../core/plans.ts';
import { connectionsSection, withConnectionsSection } from '../../../core/workspace/connections.ts';
import type { RuntimeContext } from '../context.ts';
import { serviceNamed } from './services.ts';
import { listConnections } from './store.ts';

const TOOLS_FILE = 'TOOLS.md';

export async function noteConnections(deps: Pick<RuntimeContext, 'db' | 'config' | 'workspace'>): Promise<void> {
  const tools = deps.workspace.get(TOOLS_FILE);
  if (tools === undefined) return; // a workspace without TOOLS.md (the customer removed it): nothing to keep true
  const accounts = new Map<Feature, string | null>();
  for (const connection of await listConnections(deps.db)) {
    const service = serviceNamed(connection.service);
    if (service) accounts.set(service.feature, connection.account);
  }
  const updated = withConnectionsSection(tools, connectionsSection(deps.config.features, accounts));
  if (updated !== tools) await deps.workspace.write(TOOLS_FILE, updated);
}
