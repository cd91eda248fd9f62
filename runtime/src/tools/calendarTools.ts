/** Google Calendar through the customer's connection: list events, and create one (once the customer confirms). */
import type { calendar_v3 } from '@googleapis/calendar';
import { calendarClient } from '../connections/clients.ts';
import { countField, EMAIL_ADDRESS, jsonOutcome, missingOrLong, serviceTool, textField, type ServiceToolSpec } from './serviceTool.ts';
import type { ClientTool } from './types.ts';

const LIST_DEFAULT = 10;
const LIST_MAX = 50;
const MAX_ATTENDEES = 50;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** An all-day date (YYYY-MM-DD) or an RFC 3339 time with its offset, as the Calendar API takes them. */
function eventTime(value: string): calendar_v3.Schema$EventDateTime {
  return DATE.test(value) ? { date: value } : { dateTime: value };
}

function validTime(value: unknown): boolean {
  return typeof value === 'string' && (DATE.test(value) || DATE_TIME.test(value)) && !Number.isNaN(Date.parse(value));
}

function attendeesOf(input: Record<string, unknown>): string[] {
  return Array.isArray(input.attendees) ? input.attendees.filter((a): a is string => typeof a === 'string').map((a) => a.trim()) : [];
}

function eventView(event: calendar_v3.Schema$Event) {
  return {
    id: event.id,
    summary: event.summary,
    start: event.start?.dateTime ?? event.start?.date,
    end: event.end?.dateTime ?? event.end?.date,
    location: event.location ?? undefined,
    attendees: event.attendees?.map((a) => a.email),
    link: event.htmlLink,
  };
}

const specs: ServiceToolSpec[] = [
  {
    name: 'calendar_list',
    service: 'calendar',
    description:
      "Lists events of the customer's primary Google Calendar in a time range (RFC 3339 times with offset; from now on by default), " +
      'soonest first, optionally matching words.',
    input_schema: {
      type: 'object',
      properties: {
        time_min: { type: 'string', description: 'Start of the range, e.g. 2026-05-01T00:00:00Z (default: now).' },
        time_max: { type: 'string', description: 'End of the range (optional).' },
        query: { type: 'string', description: 'Words the events must match (optional).' },
        max_results: { type: 'integer', minimum: 1, maximum: LIST_MAX, description: `Default ${LIST_DEFAULT}.` },
      },
      additionalProperties: false,
    },
    describe: () => 'listing calendar events',
    invalid: (input) => {
      for (const name of ['time_min', 'time_max']) {
        if (input[name] !== undefined && !(typeof input[name] === 'string' && DATE_TIME.test(input[name]))) return `${name} must be an RFC 3339 time with offset`;
      }
      return missingOrLong(input, { query: 300 }, []);
    },
    async call(input, ctx, token) {
      const { data } = await calendarClient(ctx.config.connections, token).events.list({
        calendarId: 'primary',
        timeMin: textField(input, 'time_min') ?? ctx.now.toISOString(),
        timeMax: textField(input, 'time_max'),
        q: textField(input, 'query'),
        singleEvents: true,
        orderBy: 'startTime',
        maxResults: countField(input, 'max_results', LIST_DEFAULT, LIST_MAX),
      });
      const events = (data.items ?? []).map(eventView);
      return jsonOutcome({ timeZone: data.timeZone, events }, `${events.length} event(s)`);
    },
  },
  {
    name: 'calendar_create',
    service: 'calendar',
    description:
      "Creates an event in the customer's primary Google Calendar (attendees get Google's invitation). Needs the customer's " +
      'confirmation: the first call only records the event and answers what to ask them; a later call after they confirmed creates it.',
    input_schema: {
      type: 'object',
      properties: {
        summary: { type: 'string', description: 'The title.' },
        start: { type: 'string', description: 'RFC 3339 time with offset, or YYYY-MM-DD for an all-day event.' },
        end: { type: 'string', description: 'Same form as start.' },
        description: { type: 'string' },
        location: { type: 'string' },
        attendees: { type: 'array', items: { type: 'string' }, description: 'Email addresses to invite.' },
      },
      required: ['summary', 'start', 'end'],
      additionalProperties: false,
    },
    describe: (input) => `creating the event "${String(input.summary ?? '').slice(0, 60)}"`,
    invalid: (input) => {
      const problem = missingOrLong(input, { summary: 300, description: 8_000, location: 500 }, ['summary', 'start', 'end']);
      if (problem) return problem;
      if (!validTime(input.start) || !validTime(input.end)) return 'start and end must be RFC 3339 times with offset, or dates YYYY-MM-DD';
      if (DATE.test(String(input.start)) !== DATE.test(String(input.end))) return 'start and end must both be dates or both be times';
      if (Date.parse(String(input.end)) <= Date.parse(String(input.start))) return 'end must be after start';
      if (input.attendees !== undefined && !Array.isArray(input.attendees)) return 'attendees must be a list of email addresses';
      const attendees = attendeesOf(input);
      if (attendees.length > MAX_ATTENDEES) return `at most ${MAX_ATTENDEES} attendees`;
      const bad = attendees.find((a) => !EMAIL_ADDRESS.test(a));
      return bad ? `"${bad.slice(0, 80)}" is not an email address` : undefined;
    },
    action: (input) => {
      const attendees = attendeesOf(input);
      return (
        `create the event "${textField(input, 'summary')}" in their Google Calendar from ${input.start} to ${input.end}` +
        (textField(input, 'location') ? ` at ${textField(input, 'location')}` : '') +
        (attendees.length ? `, inviting ${attendees.join(', ')} (Google emails them the invitation)` : '')
      );
    },
    async call(input, ctx, token) {
      const attendees = attendeesOf(input);
      const { data } = await calendarClient(ctx.config.connections, token).events.insert({
        calendarId: 'primary',
        sendUpdates: attendees.length ? 'all' : 'none',
        requestBody: {
          summary: textField(input, 'summary'),
          description: textField(input, 'description'),
          location: textField(input, 'location'),
          start: eventTime(String(input.start)),
          end: eventTime(String(input.end)),
          attendees: attendees.length ? attendees.map((email) => ({ email })) : undefined,
        },
      });
      return jsonOutcome({ created: true, event: eventView(data) }, 'event created');
    },
  },
];

export const calendarTools: ClientTool[] = specs.map(serviceTool);
