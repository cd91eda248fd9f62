/**
 * Runtime versions on this machine (the local compute provider): version V runs `<RUNTIME_RELEASES_DIR>/<V>/main.ts`
 * (or main.js) as the runtime's entry; the built-in version runs the runtime of this repository.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

/** A version name: a tag's characters (no slash, no dot-dot), so it can only name a directory of the releases. */
export const VERSION_NAME = /^[\w][\w.-]{0,127}$/;

/** The entry file of version `version` under `releasesDir`, or undefined when it is not there. */
export function releaseEntry(releasesDir: string | null, version: string): string | undefined {
  if (!releasesDir || !VERSION_NAME.test(version) || version.includes('..')) return undefined;
  return ['main.ts', 'main.js'].map((file) => path.join(releasesDir, version, file)).find((file) => existsSync(file));
}
