/**
 * Periods of continuous rate limiting by a provider, shared by every process in one Redis hash under the queue
 * prefix: when the provider began answering 429, until when a further 429 still continues the period, and whether
 * its alert was raised. A period ends when a call to the provider succeeds, or when no 429 came for longer than the
 * provider asked to wait plus a minute (nothing was tried: that is no proof of limiting).
 */
import type { Redis } from 'ioredis';

/** A 429 later than the wait the provider asked for by this much begins a new period. */
export const RATE_LIMIT_GAP_MS = 60_000;

export interface RateLimitPeriod {
  /** When the provider began rate-limiting (ms since the epoch). */
  since: number;
  /** Whether this period's alert was raised already. */
  alerted: boolean;
}

export interface RateLimitPeriods {
  /** The provider answered 429 at `at`, asking for a wait of `retryAfterMs`: the period this belongs to. */
  limited(provider: string, at: number, retryAfterMs: number): Promise<RateLimitPeriod>;
  /** The alert of the period that began at `since` was raised. */
  alerted(provider: string, since: number): Promise<void>;
  /** Providers answered a call successfully at these times (ms since the epoch): periods begun before are over. */
  answered(at: ReadonlyMap<string, number>): Promise<void>;
}

// Fields: <provider>:since, <provider>:until (a 429 up to then continues the period), <provider>:alerted.
const LIMITED = `
local p, now, untilAt = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local since = tonumber(redis.call('HGET', KEYS[1], p .. ':since'))
local last = tonumber(redis.call('HGET', KEYS[1], p .. ':until'))
if not since or not last or now > last then
  since = now
  redis.call('HSET', KEYS[1], p .. ':since', ARGV[2], p .. ':until', ARGV[3])
  redis.call('HDEL', KEYS[1], p .. ':alerted')
elseif untilAt > last then
  redis.call('HSET', KEYS[1], p .. ':until', ARGV[3])
end
return {since, redis.call('HEXISTS', KEYS[1], p .. ':alerted')}
`;

const ALERTED = `
if redis.call('HGET', KEYS[1], ARGV[1] .. ':since') == ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1] .. ':alerted', '1') end
return 0
`;

const ANSWERED = `
for i = 1, #ARGV, 2 do
  local p = ARGV[i]
  local since = tonumber(redis.call('HGET', KEYS[1], p .. ':since'))
  if since and since <= tonumber(ARGV[i + 1]) then redis.call('HDEL', KEYS[1], p .. ':since', p .. ':until', p .. ':alerted') end
end
return 0
`;

export class RedisRateLimitPeriods implements RateLimitPeriods {
  private readonly key: string;

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.key = `${prefix}:rate-limited`;
  }

  async limited(provider: string, at: number, retryAfterMs: number): Promise<RateLimitPeriod> {
    const until = at + Math.max(0, retryAfterMs) + RATE_LIMIT_GAP_MS;
    const [since, alerted] = (await this.redis.eval(LIMITED, 1, this.key, provider, String(at), String(until))) as [number, number];
    return { since: Number(since), alerted: alerted === 1 };
  }

  async alerted(provider: string, since: number): Promise<void> {
    await this.redis.eval(ALERTED, 1, this.key, provider, String(since));
  }

  async answered(at: ReadonlyMap<string, number>): Promise<void> {
    if (at.size === 0) return;
    await this.redis.eval(ANSWERED, 1, this.key, ...[...at].flatMap(([provider, ms]) => [provider, String(ms)]));
  }
}
