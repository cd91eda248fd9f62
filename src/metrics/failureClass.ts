/**
 * The class of a failure's reason, for the failure metric's `reason` label: a handful of values an operator can
 * alert on, whatever the exact text (which names ids, hosts and providers' own words).
 */
export const FAILURE_CLASSES = [
  'rate_limited',
  'timeout',
  'unreachable',
  'deployment_failed',
  'provider_5xx',
  'provider_4xx',
  'invalid',
  'other',
] as const;

export type FailureClass = (typeof FAILURE_CLASSES)[number];

// In order: the first that matches wins (a timeout reported as "unreachable: ... timeout" is a timeout).
const RULES: [FailureClass, RegExp][] = [
  ['rate_limited', /\b429\b|rate.?limit/i],
  ['timeout', /time[ds]? ?out|\bwithin \d+ ?s\b|did not finish in|deadline/i],
  ['deployment_failed', /\bdeployment \S+ failed\b|\bcrashed\b|\bbuild failed\b/i],
  ['unreachable', /unreachable|did not answer|fetch failed|ECONNREFUSED|ECONNRESET|EAI_AGAIN|ENOTFOUND|socket hang up/i],
  ['provider_5xx', /\b(?:HTTP|status|code) 5\d\d\b|\banswered HTTP 5\d\d\b/i],
  ['provider_4xx', /\b(?:HTTP|status|code) 4\d\d\b|\brefused\b|\brejected\b|Stripe: /i],
  ['invalid', /not one of this product's plans|no email|no known plan|\binvalid\b|has not completed|\bmissing\b|does not exist/i],
];

export function failureClass(reason: string | null | undefined): FailureClass {
  if (!reason) return 'other';
  return RULES.find(([, pattern]) => pattern.test(reason))?.[0] ?? 'other';
}
