/** Bull Board at /admin/queues, behind HTTP basic auth. */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { KoaAdapter } from '@bull-board/koa';
import type { Middleware } from 'koa';
import type { Queues } from '../queues/connection.ts';
import { requireBasicAuth } from './auth.ts';

export const BULL_BOARD_PATH = '/admin/queues';

export function bullBoard(queues: Queues, admin: { user: string; password: string }): Middleware {
  const serverAdapter = new KoaAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  createBullBoard({
    queues: queues.all().map((q) => new BullMQAdapter(q, { readOnlyMode: false })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Clawdbot provisioner' } },
  });
  const auth = requireBasicAuth(admin.user, admin.password, 'Clawdbot operators');
  const board = serverAdapter.registerPlugin();
  return async (ctx, next) => {
    if (ctx.path !== BULL_BOARD_PATH && !ctx.path.startsWith(BULL_BOARD_PATH + '/')) return next();
    await auth(ctx, () => board(ctx, next));
  };
}
