/** Sign-in links and account sessions on a real control-plane database. */
import { expect } from 'chai';
import { PgAccountAccess, tokenHash } from '../../src/db/accountAccess.ts';
import { controlDb } from '../support/controlDb.ts';

describe('account access (Postgres)', function () {
  this.timeout(30_000);
  let control: Awaited<ReturnType<typeof controlDb>>;
  let access: PgAccountAccess;
  let customerId: string;

  before(async () => {
    control = await controlDb('account_access');
    access = new PgAccountAccess(control.db);
    const { rows } = await control.db.query<{ id: string }>(
      `INSERT INTO customers (stripe_customer_id, email, name) VALUES ('cus_acc', 'Ann@Example.com', 'Ann') RETURNING id`,
    );
    customerId = rows[0]!.id;
  });
  after(async () => control?.drop());

  it('finds a customer by email whatever its case, and nobody for an unknown one', async () => {
    expect(await access.customerByEmail('  ann@example.COM ')).to.deep.equal({ id: customerId, email: 'Ann@Example.com' });
    expect(await access.customerByEmail('bob@example.com')).to.equal(undefined);
  });

  it('a sign-in link opens once, stores only its hash, and refuses a wrong or malformed token', async () => {
    const token = (await access.createSignInLink(customerId, 60_000, 10))!;
    expect(token).to.match(/^[A-Za-z0-9_-]{43}$/);
    const { rows } = await control.db.query('SELECT token_hash FROM sign_in_links');
    expect(rows.map((r) => r.token_hash)).to.deep.equal([tokenHash(token)]);
    expect(JSON.stringify(rows)).to.not.include(token);

    const [first, second] = await Promise.all([access.redeemSignInLink(token), access.redeemSignInLink(token)]);
    expect([first, second].filter(Boolean), 'followed twice at once: one session').to.deep.equal([customerId]);
    expect(await access.redeemSignInLink(token), 'used').to.equal(undefined);
    expect(await access.redeemSignInLink(token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'))).to.equal(undefined);
    expect(await access.redeemSignInLink('not a token')).to.equal(undefined);
  });

  it('makes at most `limit` links for a customer within the link lifetime', async () => {
    await control.db.query('DELETE FROM sign_in_links');
    const made = [];
    for (let i = 0; i < 4; i++) made.push(await access.createSignInLink(customerId, 60_000, 3));
    expect(made.map((t) => t !== null)).to.deep.equal([true, true, true, false]);

    await control.db.query('DELETE FROM sign_in_links');
    const together = await Promise.all(Array.from({ length: 8 }, () => access.createSignInLink(customerId, 60_000, 3)));
    expect(together.filter((t) => t !== null), 'eight at once: three links').to.have.length(3);
  });

  it('a purged customer’s session opens nothing', async () => {
    const { rows } = await control.db.query<{ id: string }>(`INSERT INTO customers (stripe_customer_id, email) VALUES ('cus_gone', 'gone@example.com') RETURNING id`);
    const token = await access.createSession(rows[0]!.id, 60_000);
    expect(await access.sessionCustomer(token)).to.equal(rows[0]!.id);
    await control.db.query('UPDATE customers SET email = NULL WHERE id = $1', [rows[0]!.id]);
    expect(await access.sessionCustomer(token)).to.equal(undefined);
  });

  it('an expired link opens nothing', async () => {
    const token = (await access.createSignInLink(customerId, 60_000, 10))!;
    await control.db.query(`UPDATE sign_in_links SET expires_at = now() - interval '1 second' WHERE token_hash = $1`, [tokenHash(token)]);
    expect(await access.redeemSignInLink(token)).to.equal(undefined);
  });

  it('a session names its customer until it expires or ends', async () => {
    const token = await access.createSession(customerId, 60_000);
    expect(await access.sessionCustomer(token)).to.equal(customerId);
    await access.endSession(token);
    expect(await access.sessionCustomer(token)).to.equal(undefined);

    const expiring = await access.createSession(customerId, 60_000);
    await control.db.query(`UPDATE account_sessions SET expires_at = now() - interval '2 days' WHERE token_hash = $1`, [tokenHash(expiring)]);
    expect(await access.sessionCustomer(expiring)).to.equal(undefined);
    expect(await access.forgetExpired()).to.be.greaterThan(0);
    expect((await control.db.query('SELECT count(*)::int AS n FROM account_sessions WHERE customer_id = $1', [customerId])).rows[0].n).to.equal(0);
  });
});
