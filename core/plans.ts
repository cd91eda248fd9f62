/** The product's pricing: what each plan gives a customer, and how a Stripe price maps to it. */

export type PlanName = 'starter' | 'pro' | 'team';

export type Feature =
  | 'chat'
  | 'memory'
  | 'web_search'
  | 'gmail'
  | 'calendar'
  | 'browser'
  | 'github'
  | 'custom_skills';

export const ALL_FEATURES: readonly Feature[] = [
  'chat',
  'memory',
  'web_search',
  'gmail',
  'calendar',
  'browser',
  'github',
  'custom_skills',
];

export interface Plan {
  name: PlanName;
  title: string;
  /** Messages a month; the runtime refuses chat past it. */
  messageLimit: number;
  /** Requests a minute per API key to the customer's runtime (its RATE_LIMIT); past it, 429. */
  requestsPerMinute: number;
  /** Agents the customer may define; null means unlimited. */
  agentLimit: number | null;
  features: readonly Feature[];
  /**
   * How many times in one chat turn the assistant may call its tools and read their results before it must answer;
   * a turn that needs more stops and says so. Bounds the model calls (and tokens) one message can cost.
   */
  toolRounds: number;
  /** Web searches (and, separately, page fetches) one turn may make, as the server tools' max_uses. */
  webSearchMaxUses: number;
  /** Compute limits handed to the compute provider. */
  cpu: number;
  memoryMb: number;
  /** Processes and threads the runtime may run at once (a container's pids limit), so a fork bomb stays in its box. */
  pidsLimit: number;
  /** Database size budget. */
  databaseMb: number;
  /** Verified backups of the customer's database kept (scheduled and on-demand alike); older ones are deleted. */
  backupsKept: number;
}

export const PLANS: Readonly<Record<PlanName, Plan>> = {
  starter: {
    name: 'starter',
    title: 'Starter',
    messageLimit: 5_000,
    requestsPerMinute: 60,
    agentLimit: 3,
    features: ['chat', 'memory', 'web_search'],
    toolRounds: 5,
    webSearchMaxUses: 3,
    cpu: 0.5,
    memoryMb: 512,
    pidsLimit: 128,
    databaseMb: 100,
    backupsKept: 3,
  },
  pro: {
    name: 'pro',
    title: 'Pro',
    messageLimit: 20_000,
    requestsPerMinute: 120,
    agentLimit: 10,
    features: ['chat', 'memory', 'web_search', 'gmail', 'calendar', 'browser'],
    toolRounds: 8,
    webSearchMaxUses: 5,
    cpu: 1,
    memoryMb: 1024,
    pidsLimit: 256,
    databaseMb: 500,
    backupsKept: 7,
  },
  team: {
    name: 'team',
    title: 'Team',
    messageLimit: 100_000,
    requestsPerMinute: 300,
    agentLimit: null,
    features: ALL_FEATURES,
    toolRounds: 12,
    webSearchMaxUses: 8,
    cpu: 2,
    memoryMb: 2048,
    pidsLimit: 512,
    databaseMb: 2048,
    backupsKept: 30,
  },
};

/** A plan's request rate as the runtime's RATE_LIMIT reads it: '60/m'. */
export function requestRate(plan: Pick<Plan, 'requestsPerMinute'>): string {
  return `${plan.requestsPerMinute}/m`;
}

/** The product's live Stripe prices; other Stripe accounts override them through config. */
export const DEFAULT_PRICE_IDS: Readonly<Record<PlanName, string>> = {
  starter: 'price_1SwtCbBfSldKMuDjM3p0kyG4',
  pro: 'price_1SwtCbBfSldKMuDjDmRHqErh',
  team: 'price_1SwtCcBfSldKMuDjEKBqQ6lH',
};

export function isPlanName(value: unknown): value is PlanName {
  return typeof value === 'string' && Object.hasOwn(PLANS, value);
}

export function planByName(name: string): Plan | undefined {
  return isPlanName(name) ? PLANS[name] : undefined;
}

/** The plan a Stripe price buys, or undefined for a price this product does not sell. */
export function planForPrice(priceId: string, priceIds: Readonly<Record<PlanName, string>>): Plan | undefined {
  for (const name of Object.keys(priceIds) as PlanName[]) {
    if (priceIds[name] === priceId) return PLANS[name];
  }
  return undefined;
}

/** The cheapest plan that includes a feature, for telling a customer what to upgrade to. */
export function cheapestPlanWith(feature: Feature): Plan {
  const plan = (['starter', 'pro', 'team'] as const).map((n) => PLANS[n]).find((p) => p.features.includes(feature));
  return plan ?? PLANS.team;
}
