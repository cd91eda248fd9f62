/** The secrets kept for an instance in the sealed store, by name, and their owner there. */
export const INSTANCE_SECRETS = {
  databaseUrl: 'database_url',
  /** The new API key, sealed until the welcome email has carried it to the customer, then deleted. */
  pendingApiKey: 'pending_api_key',
  /** A key an operator's rotation issued, sealed until the email has carried it to the customer, then deleted. */
  rotatedApiKey: 'rotated_api_key',
  /** Shared with the instance's runtime, which signs its calls to the control plane with it. */
  runtimeSecret: 'runtime_secret',
  /** The runtime's CONNECTIONS_KEY, which seals the customer's OAuth tokens in their database. */
  connectionsKey: 'connections_key',
  /** During a restore: the database the instance served from before the swap, to swap back to on failure. */
  previousDatabaseUrl: 'previous_database_url',
} as const;

export function instanceOwner(instanceId: string): string {
  return `instance/${instanceId}`;
}
