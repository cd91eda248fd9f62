/** Outcomes a tool answers with when it does not do what it was asked. */
import { HttpError } from '../../../core/http/httpError.ts';
import type { ToolOutcome } from './types.ts';

/** The tool refused (a bad input, something not allowed): the model reads why, as an error. */
export function refusal(reason: string): ToolOutcome {
  return { content: reason, summary: 'refused', isError: true };
}

/** An HttpError a tool threw for its input: its reason is written for the customer, so the model may read it too. */
export function isInputError(err: unknown): err is HttpError {
  return err instanceof HttpError && err.status < 500;
}
