/**
 * Bull Board at /admin/queues, behind HTTP basic auth: operators (ADMIN_USER) may act, viewers (ADMIN_VIEWER_USER,
 * optional) only look, on a board whose queues are read-only. Every action (retry, promote, clean, add, remove...) is
 * refused unless the request comes from the board's own origin (a same-origin Origin or Referer, so no other site
 * can make an operator's browser act), and is audited naming the operator before it runs.
 */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { KoaAdapter } from '@bull-board/koa';
import type { Context, Middleware } from 'koa';
import { HttpError } from '../../core/http/httpError.ts';
import type { AuditLog } from '../db/audit.ts';
import type { Queues } from '../queues/connection.ts';
import { requireBasicAuth, type BasicAccount } from './auth.ts';

export const BULL_BOARD_PATH = '/admin/queues';
const READING = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface BullBoardDeps {
  queues: Queues;
  admin: { user: string; password: string; viewer: { user: string; password: string } | null };
  audit: Pick<AuditLog, 'record'>;
  /** Where operators open the board (PUBLIC_URL): its origin is the board's own, besides the request's host. */
  publicUrl: string;
}

function board(queues: Queues, readOnlyMode: boolean): Middleware {
  const serverAdapter = new KoaAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  createBullBoard({
    queues: queues.all().map((q) => new BullMQAdapter(q, { readOnlyMode })),
    serverAdapter,
    options: { uiConfig: { boardTitle: readOnlyMode ? 'Clawdbot provisioner (read-only)' : 'Clawdbot provisioner' } },
  });
  return serverAdapter.registerPlugin() as Middleware;
}

/** Whether the request's Origin (or, without one, its Referer) is this board's own origin. */
function sameOrigin(ctx: Context, publicUrl: string): boolean {
  let origin = ctx.get('origin');
  if (!origin || origin === 'null') {
    try {
      origin = new URL(ctx.get('referer')).origin;
    } catch {
      return false;
    }
  }
  const own = [`${ctx.protocol}://${ctx.host}`, publicUrl ? new URL(publicUrl).origin : ''];
  return own.includes(origin);
}

export function bullBoard(deps: BullBoardDeps): Middleware {
  const operators = board(deps.queues, false);
  const viewers = deps.admin.viewer ? board(deps.queues, true) : undefined;
  const accounts: BasicAccount[] = [
    { user: deps.admin.user, password: deps.admin.password },
    ...(deps.admin.viewer ? [{ ...deps.admin.viewer, readOnly: true }] : []),
  ];
  const auth = requireBasicAuth(accounts, 'Clawdbot operators');
  return async (ctx, next) => {
    if (ctx.path !== BULL_BOARD_PATH && !ctx.path.startsWith(BULL_BOARD_PATH + '/')) return next();
    await auth(ctx, async () => {
      const account = ctx.state.account as BasicAccount;
      if (!READING.has(ctx.method)) {
        if (account.readOnly) throw new HttpError(403, 'read_only', `${account.user} may look at the queues but not act on them`);
        if (!sameOrigin(ctx, deps.publicUrl)) {
          throw new HttpError(403, 'cross_origin', 'an action needs the Origin (or Referer) of this board: open it and act from there');
        }
        await deps.audit.record({ actor: `operator:${account.user}`, action: 'bullboard.action', detail: { method: ctx.method, path: ctx.path } });
      }
      await (account.readOnly ? viewers! : operators)(ctx, next);
    });
  };
}
