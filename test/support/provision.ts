/** A customer signed up through a signed checkout and provisioned to active on the harness, with what they got. */
import { expect } from 'chai';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import type { CapturedMail } from '../emulators/smtpCapture.ts';
import type { Harness, InstanceView } from './harness.ts';

/** A customer's API key as an email carries it. */
export const KEY_IN_MAIL = /claw_[0-9A-Za-z]{43}/;

export interface Provisioned {
  customerId: string;
  view: InstanceView;
  mail: CapturedMail;
  apiKey: string;
  instanceId: string;
  databaseUrl: string;
}

export async function provision(h: Harness, email: string, name: string, plan: 'starter' | 'pro' | 'team' = 'starter'): Promise<Provisioned> {
  const { customerId, event } = h.checkout({ email, name, plan });
  const response = await h.deliver(event);
  expect(response.status).to.equal(200);
  const view = await h.waitForStatus(customerId, ['active', 'failed']);
  expect(view.failure, JSON.stringify(view.failure)).to.equal(null);
  expect(view.status).to.equal('active');
  const mail = await h.smtp.waitFor((m) => m.to.includes(email) && m.subject === 'Your Clawdbot is ready');
  const apiKey = KEY_IN_MAIL.exec(mail.text)?.[0];
  expect(apiKey, 'the welcome email carries the API key').to.be.a('string');
  const { rows } = await h.db.query<{ id: string }>('SELECT id FROM instances WHERE workspace_id = $1', [view.workspaceId]);
  const databaseUrl = (await h.plane.ctx.secrets.get(instanceOwner(rows[0]!.id), INSTANCE_SECRETS.databaseUrl))!;
  return { customerId, view, mail, apiKey: apiKey!, instanceId: rows[0]!.id, databaseUrl };
}

