/**
 * A small structured logger: one line per event, `time level scope message key=value…`. Callers pass ids, never
 * secrets; values that look like credentials are masked as a second line of defence.
 */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
type Fields = Record<string, unknown>;

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold = ORDER.info;

/** Set once at start from the validated config (LOG_LEVEL). */
export function setLogLevel(level: LogLevel): void {
  threshold = ORDER[level];
}
const SECRET_LIKE = /(claw_[0-9A-Za-z]{43}|[sr]k_(live|test)_[0-9A-Za-z]+|sk-ant-[\w-]+|whsec_[0-9A-Za-z]+|\/\/[^/\s:@]*:[^\s]+@)/g;

export function maskSecrets(text: string): string {
  return text.replace(SECRET_LIKE, (m) => (m.startsWith('//') ? '//***:***@' : m.slice(0, 5) + '***'));
}

/** Masks credentials in an error's message and stack in place, before anything stores or shows it. */
export function maskError(err: unknown): void {
  if (!(err instanceof Error)) return;
  err.message = maskSecrets(err.message);
  if (err.stack) err.stack = maskSecrets(err.stack);
}

function format(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return /[\s"]/.test(text ?? '') ? JSON.stringify(text) : String(text);
}

export function logger(scope: string) {
  const write = (level: LogLevel, message: string, fields: Fields = {}) => {
    if (ORDER[level] < threshold) return;
    const extras = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${format(v)}`)
      .join(' ');
    const line = `${new Date().toISOString()} ${level.toUpperCase()} ${scope} ${message}${extras ? ' ' + extras : ''}`;
    (level === 'error' || level === 'warn' ? process.stderr : process.stdout).write(maskSecrets(line) + '\n');
  };
  return {
    debug: (m: string, f?: Fields) => write('debug', m, f),
    info: (m: string, f?: Fields) => write('info', m, f),
    warn: (m: string, f?: Fields) => write('warn', m, f),
    error: (m: string, f?: Fields) => write('error', m, f),
  };
}
