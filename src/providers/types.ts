/** The interfaces jobs use for side effects. Jobs hold the logic; providers hold the I/O. */
import type { Plan } from '../../core/plans.ts';

/** A deployment's state, reduced from what each provider reports. */
export type DeploymentState = 'in_progress' | 'success' | 'failed' | 'needs_approval';

export interface ComputeProvider {
  readonly kind: string;
  /**
   * Creates the service named `name` (no lookup: the caller records the id at once). With `mayExist`, an earlier run
   * asked for it and may have died before recording its id: the service is then first looked for by its name, the
   * one lookup that may cost more than a call (Railway lists the project's services), made only in that recovery.
   */
  createService(name: string, options?: { mayExist?: boolean }): Promise<{ serviceId: string; created: boolean }>;
  /**
   * Where the service answers HTTP (the public domain in the cloud, a loopback port locally), made once. `fresh`:
   * the service was just created, so it has none yet to look for.
   */
  accessUrl(serviceId: string, options?: { fresh?: boolean }): Promise<string>;
  /**
   * The service's whole configuration for a plan: every variable (no deploy yet), the plan's CPU and memory, and the
   * runtime version it runs (Railway: the image's tag; locally the RUNTIME_VERSION variable picks the release).
   */
  configure(serviceId: string, settings: ServiceConfigurationInput): Promise<void>;
  deploy(serviceId: string): Promise<{ deploymentId: string }>;
  deploymentState(serviceId: string, deploymentId: string): Promise<{ state: DeploymentState; detail?: string }>;
  /** The service's newest deployment, so a step that died after deploying adopts it instead of deploying again. */
  latestDeployment(serviceId: string): Promise<{ deploymentId: string; createdAt: Date } | null>;
  stop(serviceId: string): Promise<void>;
  deleteService(serviceId: string): Promise<void>;
  /**
   * Whether the service's runtime is running, as the provider sees it, for the health monitor. `cheap` providers
   * (a process table) are asked at every probe; others (an API with a request budget) only once /health failed.
   */
  serviceState(serviceId: string): Promise<ServiceState>;
  readonly serviceStateIsCheap: boolean;
  /** The last lines the runtime wrote, secrets masked, where the provider keeps its log (local). */
  recentLog?(serviceId: string): Promise<string[]>;
  /** Starts the service's runtime again (the health monitor, after failures): what was done, for the incident. */
  restart(serviceId: string): Promise<{ action: string }>;
  /**
   * Every service the provider holds for this control plane (the whole Railway project, paged; every local service).
   * Only the reconciler lists, once per run.
   */
  listServices(): Promise<ListedService[]>;
  /** What the service holds now (read back, to compare with what configure sets); null when it does not exist. */
  readSettings(serviceId: string): Promise<ServiceSettings | null>;
  close(): Promise<void>;
}

export interface ServiceConfigurationInput {
  variables: Record<string, string>;
  /** The plan's limits; providers that cannot bound processes (Railway, local processes) leave pidsLimit aside. */
  limits: Pick<Plan, 'cpu' | 'memoryMb' | 'pidsLimit'>;
  /** The runtime version (a fleet generation's); unset, what the configuration names. */
  version?: string;
}

export interface ServiceState {
  running: boolean;
  /** What the provider says (a process that exited and how, a deployment's status and id), for operators. */
  detail: string;
}

/** A service as the compute provider lists it. */
export interface ListedService {
  serviceId: string;
  name: string;
}

/** A service's variables and limits as its provider holds them. */
export interface ServiceSettings {
  variables: Record<string, string>;
  /** null when the provider's answer holds no limits this control plane can read. */
  limits: Pick<Plan, 'cpu' | 'memoryMb'> | null;
}

export interface DatabaseRef {
  /** The provider's id for the customer's isolated database (a Neon branch id, or the local database name). */
  branchId: string;
  databaseName: string;
  roleName: string;
}

/** Where a provider is in making a database (ids and counters only: it is kept in the step's job data). */
export type DatabaseProgress = Record<string, string | number | string[]>;

/** Something operators must hear about once (say, a pool filling up): raised as an incident, at most once per key. */
export interface ProviderAlert {
  key: string;
  title: string;
  reason: string;
}

export type EnsureDatabaseResult = (
  | { ready: DatabaseRef & { connectionUrl: string } }
  | { pending: DatabaseProgress; retryInMs: number; detail: string }
) & { alerts?: ProviderAlert[] };

export interface DatabaseProvider {
  readonly kind: string;
  /**
   * One idempotent step towards the customer's database and login role: finds what exists, creates what is
   * missing, and answers `ready` with the connection URL, or `pending` when the provider is still working (the
   * step comes back after retryInMs with the progress it was given, holding no worker slot meanwhile).
   */
  ensureDatabase(name: string, progress?: DatabaseProgress): Promise<EnsureDatabaseResult>;
  deleteDatabase(ref: DatabaseRef): Promise<void>;
  /**
   * Every customer database the provider holds for this control plane (each Neon project's branches, paged; the
   * local databases and roles whose password this control plane keeps). Only the reconciler lists, once per run.
   */
  listDatabases(): Promise<ListedDatabase[]>;
  close(): Promise<void>;
}

/** A customer database as its provider lists it: what deleting it takes, its name, and what of it is gone. */
export interface ListedDatabase extends DatabaseRef {
  /** The name it goes by (a Neon branch's, a local database's or role's). */
  name: string;
  /** Parts that are gone (locally a database and its role can go one without the other); empty when whole. */
  missing: ('database' | 'role')[];
}

export interface MailMessage {
  to: string;
  subject: string;
  text: string;
  html?: string;
  /** A deterministic Message-ID: mail clients thread a repeat (after a crash between send and record) with it. */
  messageId?: string;
}

export interface Mailer {
  send(message: MailMessage): Promise<void>;
  close(): void;
}
