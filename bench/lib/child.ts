/**
 * A bench child process: a TypeScript script run by node with tsx, started apart from the bench so that its CPU is
 * not the bench's, ready once its output matches a pattern, and stopped (SIGTERM, then SIGKILL) by stop().
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface BenchChild {
  child: ChildProcess;
  /** The match of the ready pattern in the output. */
  ready: RegExpExecArray;
  /** The last 64 KB of stdout and stderr, for messages. */
  output(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  /** Asks the process to stop and waits for it; kills it if it has not exited in `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const KEEP = 64 * 1024;

export async function startChild(
  script: string,
  options: { args?: string[]; env?: Record<string, string>; nodeArgs?: string[]; ready: RegExp; timeoutMs?: number },
): Promise<BenchChild> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', script, ...(options.args ?? [])], {
    env: { PATH: process.env.PATH ?? '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    if (output.length > 2 * KEEP) output = output.slice(-KEEP);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => (gone = true));

  const stop = async (graceMs = 15_000) => {
    if (gone) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };

  const timeoutMs = options.timeoutMs ?? 60_000;
  const ready = await new Promise<RegExpExecArray>((resolve, reject) => {
    const check = () => {
      const match = options.ready.exec(output);
      if (match) {
        done();
        resolve(match);
      }
    };
    const failed = (why: string) => {
      done();
      reject(new Error(`${script} ${why}; its output:\n${output.slice(-4000)}`));
    };
    const onExit = (code: number | null) => failed(`exited (${code}) before it was ready`);
    const timer = setTimeout(() => failed(`was not ready in ${timeoutMs} ms`), timeoutMs);
    const done = () => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.stderr!.off('data', check);
      child.off('exit', onExit);
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', onExit);
  }).catch(async (err: Error) => {
    await stop(2_000);
    throw err;
  });

  return { child, ready, output: () => output, exited, stop };
}
