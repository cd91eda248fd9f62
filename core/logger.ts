/**
 * Logs through pino: one JSON line per event on stdout (`level`, `time`, `scope`, the job's ids, the fields, then
 * `message`), or one pretty line in development. Callers pass ids, never secrets; as second and third lines of
 * defence, fields named like secrets are redacted by path and anything shaped like a credential is masked in the
 * written line. Shared by the control plane and the runtime: each configures it once at start from its own config.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** `pretty` needs pino-pretty, a development dependency: production images do not have it. */
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const SECRET_LIKE = /(claw_[0-9A-Za-z]{43}|[sr]k_(live|test)_[0-9A-Za-z]+|sk-ant-[\w-]+|whsec_[0-9A-Za-z]+|ya29\.[\w-]+|1\/\/[\w-]{20,}|gh[oprsu]_[0-9A-Za-z]+|\bBearer\s+[^\s"\\]+|\/\/[^/\s:@"\\]*:[^\s"\\]+@)/g;

/** Masks what looks like a credential; never crosses a quote, so a JSON line stays JSON. */
export function maskSecrets(text: string): string {
  return text.replace(SECRET_LIKE, (m) => (m.startsWith('//') ? '//***:***@' : m.startsWith('Bearer') ? 'Bearer ***' : m.slice(0, 5) + '***'));
}

/** Masks credentials in an error's message and stack in place, before anything stores or shows it. */
export function maskError(err: unknown): void {
  if (!(err instanceof Error)) return;
  err.message = maskSecrets(err.message);
  if (err.stack) err.stack = maskSecrets(err.stack);
}

/**
 * Field names that hold secrets in this codebase (options, env variables, headers): redacted at the top of a line's
 * fields and inside the objects named in SECRET_HOLDERS. Paths, not `*` wildcards: those cost ~50 µs a line.
 */
const SECRET_FIELDS = [
  'password', 'adminPassword', 'ADMIN_PASSWORD',
  'token', 'accessToken', 'adminToken', 'projectToken', 'metricsToken', 'ADMIN_TOKEN', 'METRICS_TOKEN', 'RAILWAY_TOKEN', 'RAILWAY_PROJECT_TOKEN',
  'key', 'apiKey', 'anthropicApiKey', 'pendingApiKey', 'secretKey', 'secretsKey', 'ANTHROPIC_API_KEY', 'NEON_API_KEY', 'SECRETS_KEY', 'STRIPE_SECRET_KEY',
  'secret', 'webhookSecret', 'runtimeSecret', 'controlPlaneSecret', 'STRIPE_WEBHOOK_SECRET', 'CONTROL_PLANE_SECRET',
  'clientSecret', 'connectionsKey', 'refreshToken', 'access_token', 'refresh_token', 'id_token', 'GOOGLE_CLIENT_SECRET', 'GITHUB_CLIENT_SECRET', 'CONNECTIONS_KEY',
  'authorization', 'Authorization', 'cookie',
  'connectionUrl', 'connectionString', 'databaseUrl', 'redisUrl', 'smtpUrl', 'slackWebhookUrl', 'DATABASE_URL', 'REDIS_URL', 'SMTP_URL', 'SLACK_WEBHOOK_URL',
];
export const REDACTED = '[redacted]';
const SECRET_HOLDERS = ['headers', 'variables', 'env', 'config', 'options', 'body', 'data'];
const REDACT_PATHS = [...SECRET_FIELDS, ...SECRET_HOLDERS.flatMap((holder) => SECRET_FIELDS.map((name) => `${holder}.${name}`))];

interface Settings {
  level: LogLevel;
  format: LogFormat;
  /** On every line of the process (the runtime's workspace id). */
  bindings: LogFields;
}

let settings: Settings = { level: 'info', format: 'json', bindings: {} };
/** Where lines go instead of stdout (tests capture them). */
let capture: { write(line: string): unknown } | undefined;
let stdout: DestinationStream | undefined;
let pretty: ((line: string) => string) | undefined;
const jobContext = new AsyncLocalStorage<LogFields>();

const require = createRequire(import.meta.url);

/** Whether pino-pretty is installed (a development checkout, not a production image). */
export function prettyAvailable(): boolean {
  try {
    require.resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

/** LOG_FORMAT when not set: pretty in development where pino-pretty is installed, JSON lines otherwise. */
export function defaultLogFormat(production: boolean): LogFormat {
  return !production && prettyAvailable() ? 'pretty' : 'json';
}

/** Why `format` cannot be used here, if it cannot (for the configs' problem lists). */
export function logFormatProblem(format: LogFormat, production: boolean): string | undefined {
  if (format !== 'pretty') return undefined;
  if (production) return 'LOG_FORMAT=pretty is for development: production logs are JSON lines';
  if (!prettyAvailable()) return 'LOG_FORMAT=pretty needs pino-pretty, a development dependency that is not installed';
  return undefined;
}

/** pino-pretty formats each line in this thread as it is written: no worker thread, lines stay in order. */
function prettifier(): (line: string) => string {
  if (!pretty) {
    const { prettyFactory } = require('pino-pretty') as typeof import('pino-pretty');
    pretty = prettyFactory({
      messageKey: 'message',
      singleLine: true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'scope',
      messageFormat: '{if scope}{scope}: {end}{message}',
      // `error` is most often a message string: kept on the line, not printed as an error block below it.
      errorLikeObjectKeys: ['err'],
    });
  }
  return pretty;
}

/** Every line passes here, serialized and redacted: masked, then written (pretty in development). */
const sink: DestinationStream = {
  write(line: string) {
    const masked = maskSecrets(line);
    const out = settings.format === 'pretty' ? prettifier()(masked) : masked;
    if (capture) capture.write(out);
    else (stdout ??= pino.destination({ dest: 1, sync: true })).write(out);
  },
};

function build(): PinoLogger {
  return pino(
    {
      level: settings.level,
      messageKey: 'message',
      base: settings.bindings,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
      // pino merges the fields into what this returns: a fresh object each line.
      mixin: () => ({ ...jobContext.getStore() }),
    },
    sink,
  );
}

let root = build();
/** Bumped when the root is rebuilt, so each scope's child follows (a child keeps the level it was made with). */
let generation = 0;

/** Set at start from the validated config; what is not given stays as it was. */
export function configureLogs(options: Partial<Settings>): void {
  settings = { ...settings, ...options };
  if (settings.format === 'pretty') prettifier(); // fails at start, not at the first line
  root = build();
  generation++;
}

/** For a test that quiets a noisy stretch (a runtime crash-looping on purpose). */
export function setLogLevel(level: LogLevel): void {
  configureLogs({ level });
}

/** Tests: every line goes to `destination` instead of stdout, until called with undefined. */
export function logTo(destination: { write(line: string): unknown } | undefined): void {
  capture = destination;
}

/**
 * Runs `fn` with these ids on every line it logs, however deep (the worker runs each job so: queue, job, flow,
 * instance, workspace, customer).
 */
export function withLogContext<T>(bindings: LogFields, fn: () => T): T {
  return jobContext.run({ ...jobContext.getStore(), ...bindings }, fn);
}

/** Adds ids to the lines still to come in the current context (once a job has read its instance, say). */
export function addLogContext(bindings: LogFields): void {
  const store = jobContext.getStore();
  if (store) Object.assign(store, bindings);
}

/** A logger for one part of the code: its lines carry `scope`. */
export function logger(scope: string): Logger {
  let child: PinoLogger | undefined;
  let built = -1;
  const current = (): PinoLogger => {
    if (built !== generation) {
      child = root.child({ scope });
      built = generation;
    }
    return child!;
  };
  const method =
    (level: LogLevel) =>
    (message: string, fields?: LogFields): void => {
      if (fields) current()[level](fields, message);
      else current()[level](message);
    };
  return { debug: method('debug'), info: method('info'), warn: method('warn'), error: method('error') };
}
