/**
 * Queries as named statements, which node-postgres parses once per connection and then only binds and runs. For a
 * long statement run on every chat turn (the memory search is some 4 KB of SQL), parsing and analyzing it again
 * each time cost about a millisecond, more than running it. A statement built in a few shapes gets one name per
 * shape, from its text.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';

export function namedStatement(prefix: string, text: string, values: unknown[]): pg.QueryConfig {
  return { name: `${prefix}-${createHash('sha1').update(text).digest('hex').slice(0, 16)}`, text, values };
}
