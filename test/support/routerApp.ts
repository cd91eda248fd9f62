/** Serves routers on a free loopback port behind the project's JSON error middleware, as the runtime does. */
import type { Server } from 'node:http';
import Koa from 'koa';
import type Router from '@koa/router';
import { jsonErrors } from '../../core/http/httpError.ts';

export async function listen(...routers: Router[]): Promise<Server> {
  const app = new Koa();
  app.use(jsonErrors);
  for (const router of routers) app.use(router.routes()).use(router.allowedMethods());
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return server;
}
