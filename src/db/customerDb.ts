/** One short connection to a customer's own database, made with that customer's credentials. */
import pg from 'pg';

export async function withCustomerDb<T>(connectionUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: connectionUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // a dropped connection surfaces through the pending query instead
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
