/**
 * Queues, and which step runs on which. Steps that call a provider sit on that provider's queue, so one global
 * BullMQ rate limiter per queue keeps every worker together within the provider account's limits.
 */
export const QUEUES = {
  stripeEvents: 'stripe-events',
  provision: 'provision',
  compute: 'compute',
  database: 'database',
  alerts: 'alerts',
  /** Operator actions and, later, the rest of a subscription's life. */
  lifecycle: 'lifecycle',
} as const;

export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

export function isQueueName(name: string): name is QueueName {
  return (Object.values(QUEUES) as string[]).includes(name);
}

export const STEPS = {
  createBranch: 'create-branch',
  createService: 'create-service',
  buildWorkspace: 'build-workspace',
  deploy: 'deploy',
  healthCheck: 'health-check',
  sendWelcomeEmail: 'send-welcome-email',
  finalize: 'finalize',
} as const;

export type StepName = (typeof STEPS)[keyof typeof STEPS];

export function isStepName(name: string): name is StepName {
  return (Object.values(STEPS) as string[]).includes(name);
}

export const STEP_QUEUE: Record<StepName, QueueName> = {
  'create-branch': QUEUES.database,
  'create-service': QUEUES.compute,
  'build-workspace': QUEUES.provision,
  deploy: QUEUES.compute,
  'health-check': QUEUES.provision,
  'send-welcome-email': QUEUES.provision,
  finalize: QUEUES.provision,
};

/** BullMQ refuses ':' in custom job ids; ids are built from safe parts joined by '-'. */
export function jobId(...parts: string[]): string {
  const id = parts.join('-');
  if (id.includes(':')) throw new Error(`job id must not contain ":" (${id})`);
  return id;
}
