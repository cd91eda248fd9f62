/** GitHub through the customer's connection: list a repository's issues, and comment on one (once the customer confirms). */
import { githubClient } from '../connections/clients.ts';
import { countField, jsonOutcome, missingOrLong, serviceTool, textField, type ServiceToolSpec } from './serviceTool.ts';
import type { ClientTool } from './types.ts';

const LIST_DEFAULT = 20;
const LIST_MAX = 50;
const REPO = /^([A-Za-z0-9-]{1,39})\/([A-Za-z0-9._-]{1,100})$/;
const STATES = ['open', 'closed', 'all'] as const;

function repoOf(input: Record<string, unknown>): { owner: string; repo: string } {
  const [, owner, repo] = REPO.exec(String(input.repo))!;
  return { owner: owner!, repo: repo! };
}

const invalidRepo = (input: Record<string, unknown>): string | undefined =>
  typeof input.repo === 'string' && REPO.test(input.repo) ? undefined : 'repo must be "owner/name"';

const specs: ServiceToolSpec[] = [
  {
    name: 'github_issues',
    service: 'github',
    description: 'Lists issues (and pull requests, marked so) of a GitHub repository the customer can see, newest first.',
    input_schema: {
      type: 'object',
      properties: {
        repo: { type: 'string', description: 'owner/name' },
        state: { type: 'string', enum: [...STATES], description: 'Default open.' },
        max_results: { type: 'integer', minimum: 1, maximum: LIST_MAX, description: `Default ${LIST_DEFAULT}.` },
      },
      required: ['repo'],
      additionalProperties: false,
    },
    describe: (input) => `listing issues of ${String(input.repo ?? '').slice(0, 80)}`,
    invalid: (input) => invalidRepo(input) ?? (input.state === undefined || STATES.includes(input.state as never) ? undefined : `state must be one of ${STATES.join(', ')}`),
    async call(input, ctx, token) {
      const { data } = await githubClient(ctx.config.connections, token).rest.issues.listForRepo({
        ...repoOf(input),
        state: (input.state as (typeof STATES)[number] | undefined) ?? 'open',
        per_page: countField(input, 'max_results', LIST_DEFAULT, LIST_MAX),
      });
      const issues = data.map((issue) => ({
        number: issue.number,
        title: issue.title,
        state: issue.state,
        author: issue.user?.login,
        labels: issue.labels.map((l) => (typeof l === 'string' ? l : l.name)),
        comments: issue.comments,
        pullRequest: Boolean(issue.pull_request),
        url: issue.html_url,
      }));
      return jsonOutcome({ issues }, `${issues.length} issue(s)`);
    },
  },
  {
    name: 'github_comment',
    service: 'github',
    description:
      'Comments on a GitHub issue or pull request as the customer. Needs the customer\'s confirmation: the first call only records the ' +
      'comment and answers what to ask them; a later call after they confirmed posts it.',
    input_schema: {
      type: 'object',
      properties: {
        repo: { type: 'string', description: 'owner/name' },
        issue_number: { type: 'integer', minimum: 1 },
        body: { type: 'string', description: 'Markdown.' },
      },
      required: ['repo', 'issue_number', 'body'],
      additionalProperties: false,
    },
    describe: (input) => `commenting on ${String(input.repo ?? '').slice(0, 80)}#${Number(input.issue_number)}`,
    invalid: (input) =>
      invalidRepo(input) ??
      (Number.isInteger(input.issue_number) && Number(input.issue_number) >= 1 ? undefined : 'issue_number must be a positive integer') ??
      missingOrLong(input, { body: 60_000 }, ['body']),
    action: (input) => `post this comment as them on ${input.repo}#${input.issue_number}: "${textField(input, 'body')}"`,
    async call(input, ctx, token) {
      const { data } = await githubClient(ctx.config.connections, token).rest.issues.createComment({
        ...repoOf(input),
        issue_number: Number(input.issue_number),
        body: textField(input, 'body')!,
      });
      return jsonOutcome({ commented: true, id: data.id, url: data.html_url }, 'comment posted');
    },
  },
];

export const githubTools: ClientTool[] = specs.map(serviceTool);
