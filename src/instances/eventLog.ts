/**
 * One line per lifecycle event of an instance, at INFO (a failure at WARN), with the instance's ids: what operators
 * search the logs for. Status changes are logged by the state machine; resizes, restarts and recoveries where they
 * happen.
 */
import { logger, type LogFields } from '../../core/logger.ts';
import type { InstanceEvent } from './stateMachine.ts';

const log = logger('instances');

export type LoggedInstanceEvent = InstanceEvent | 'resized' | 'restarted' | 'recovered' | 'restored';

export interface InstanceIds {
  instance: string;
  workspace?: string;
  customer?: string;
}

/** Logs `instance <event>` with `event`, the ids and `fields` (never secrets). */
export function logInstanceEvent(event: LoggedInstanceEvent, ids: InstanceIds, fields: LogFields = {}): void {
  (event === 'failed' ? log.warn : log.info)(`instance ${event}`, { event, ...ids, ...fields });
}
