/** What the welcome page shows of a provisioning under way: each step in the customer's words, and its state. */
import type { StepLedger } from '../../db/steps.ts';
import { STEPS, type StepName } from '../../queues/catalogue.ts';
import type { Visit } from './visit.ts';

const STEP_TITLES: Record<StepName, string> = {
  'create-branch': 'Creating your database',
  'create-service': 'Preparing your server',
  'build-workspace': 'Building your workspace and API key',
  deploy: 'Starting your assistant',
  'health-check': 'Checking that it answers',
  'send-welcome-email': 'Sending your welcome email',
  finalize: 'Finishing up',
};

export type ShownState = 'pending' | 'running' | 'waiting' | 'completed' | 'failed';

const STATE_TEXT: Record<ShownState, string> = {
  pending: 'Waiting',
  running: 'In progress',
  waiting: 'In progress',
  completed: 'Done',
  failed: 'Stopped',
};

export interface ProgressView {
  /** The instance status, or 'starting' while the checkout's webhook is still on its way. */
  status: string;
  /** The page has its final state (the browser reloads to show it). */
  finished: boolean;
  steps: { name: StepName; title: string; state: ShownState; stateText: string }[];
}

export async function progressView(steps: Pick<StepLedger, 'list'>, visit: Visit): Promise<ProgressView> {
  const rows = visit.instance ? await steps.list(visit.instance.id) : [];
  const states = new Map(rows.map((row) => [row.name, row.state]));
  const status = visit.instance?.status ?? 'starting';
  return {
    status,
    finished: status !== 'starting' && status !== 'provisioning',
    steps: Object.values(STEPS).map((name) => {
      const known = states.get(name);
      const state: ShownState = known === 'running' || known === 'waiting' || known === 'completed' || known === 'failed' ? known : 'pending';
      return { name, title: STEP_TITLES[name], state, stateText: STATE_TEXT[state] };
    }),
  };
}
