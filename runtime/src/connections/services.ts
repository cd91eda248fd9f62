/**
 * The services a customer can connect, what plan feature each is, which provider authorizes it and with which
 * scopes, and whether this platform is set up for it (an OAuth app and the key that seals tokens).
 */
import { cheapestPlanWith, PLANS, type Feature, type PlanName } from '../../../core/plans.ts';
import type { ConnectionsConfig, OAuthApp } from '../config.ts';

export type ServiceName = 'gmail' | 'calendar' | 'github';
export type Provider = 'google' | 'github';

export interface ConnectableService {
  name: ServiceName;
  title: string;
  feature: Feature;
  provider: Provider;
  /** What the connection asks for: the least that the service's tools need. */
  scopes: readonly string[];
}

const GOOGLE_SCOPE = 'https://www.googleapis.com/auth/';

export const SERVICES: Readonly<Record<ServiceName, ConnectableService>> = {
  gmail: {
    name: 'gmail',
    title: 'Gmail',
    feature: 'gmail',
    provider: 'google',
    // openid email: the id token names the account; readonly reads and searches; compose drafts and sends.
    scopes: ['openid', 'email', `${GOOGLE_SCOPE}gmail.readonly`, `${GOOGLE_SCOPE}gmail.compose`],
  },
  calendar: {
    name: 'calendar',
    title: 'Google Calendar',
    feature: 'calendar',
    provider: 'google',
    scopes: ['openid', 'email', `${GOOGLE_SCOPE}calendar.events`],
  },
  github: { name: 'github', title: 'GitHub', feature: 'github', provider: 'github', scopes: ['repo'] },
};

export const SERVICE_NAMES = Object.keys(SERVICES) as ServiceName[];

export function serviceNamed(name: string): ConnectableService | undefined {
  return Object.hasOwn(SERVICES, name) ? SERVICES[name as ServiceName] : undefined;
}

/** The platform's OAuth app for a service's provider, or undefined when the platform has none or no sealing key. */
export function oauthAppFor(config: ConnectionsConfig, service: ConnectableService): OAuthApp | undefined {
  if (!config.key) return undefined;
  return service.provider === 'google' ? config.google.app : config.github.app;
}

/** Where the customer connects a service (with their API key); the tools and errors point there. */
export function connectPath(service: ConnectableService): string {
  return `/api/connections/${service.name}`;
}

/** Why the plan has no such service, naming the plan that has it (the API's 403 and the tools say the same). */
export function notInPlan(service: ConnectableService, plan: PlanName): { reason: string; requiredPlan: PlanName } {
  const required = cheapestPlanWith(service.feature);
  return {
    reason: `${service.title} is not included in the ${PLANS[plan].title} plan; it comes with the ${required.title} plan`,
    requiredPlan: required.name,
  };
}
