/**
 * The documentation's links: every relative link in README.md and docs/*.md names a file or folder of the
 * repository, and every #anchor names a heading of the page it points to. A moved file or a renamed heading fails
 * here, so the docs cannot quietly drift from the tree.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** README.md and every page under docs/, relative to the root. */
function docPages(root: string): string[] {
  const docs = existsSync(path.join(root, 'docs')) ? readdirSync(path.join(root, 'docs')) : [];
  return ['README.md', ...docs.filter((name) => name.endsWith('.md')).sort().map((name) => `docs/${name}`)];
}

/** The page's lines with fenced code blocks blanked (line numbers kept). */
function outsideFences(markdown: string): string[] {
  let fence: string | undefined;
  return markdown.split('\n').map((line) => {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === undefined && marker) fence = marker;
    else if (fence !== undefined && marker?.startsWith(fence)) fence = undefined;
    else if (fence === undefined) return line;
    return '';
  });
}

/** Targets of inline links and images, `[text](target)`, and of reference definitions, `[name]: target`. */
function linkTargets(markdown: string): { target: string; line: number }[] {
  const found: { target: string; line: number }[] = [];
  outsideFences(markdown).forEach((line, index) => {
    const text = line.replace(/(`+)[^`]*?\1/g, ''); // inline code is not a link
    for (const match of text.matchAll(/\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g)) found.push({ target: match[1]!, line: index + 1 });
    const definition = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/.exec(text);
    if (definition) found.push({ target: definition[1]!, line: index + 1 });
  });
  return found;
}

/** GitHub's anchor of a heading: its text in lower case, punctuation dropped, each space a hyphen. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[`*]/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of a page's headings; a repeated heading gets -1, -2, … as on GitHub. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of outsideFences(markdown)) {
    const heading = /^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = slug(heading);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    out.add(count === 0 ? base : `${base}-${count}`);
  }
  return out;
}

/** Every link of a page that does not resolve, as `page:line target (why)`. */
function brokenLinks(root: string, page: string): string[] {
  const file = path.join(root, page);
  const broken: string[] = [];
  for (const { target, line } of linkTargets(readFileSync(file, 'utf8'))) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue; // http:, https:, mailto:, …
    const hash = target.indexOf('#');
    const linked = hash === -1 ? target : target.slice(0, hash);
    const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1));
    const resolved = linked === '' ? file : path.resolve(path.dirname(file), decodeURIComponent(linked));
    const where = `${page}:${line} ${target}`;
    if (path.relative(root, resolved).startsWith('..')) broken.push(`${where} (outside the repository)`);
    else if (!existsSync(resolved)) broken.push(`${where} (no such file)`);
    else if (anchor !== undefined && !resolved.endsWith('.md')) broken.push(`${where} (an anchor into a file that is not markdown)`);
    else if (anchor !== undefined && !anchors(readFileSync(resolved, 'utf8')).has(anchor)) broken.push(`${where} (no such heading)`);
  }
  return broken;
}

describe('documentation links', () => {
  it('every relative link and anchor in README.md and docs/*.md resolves', () => {
    const pages = docPages(ROOT);
    expect(pages.length).to.be.greaterThan(1);
    expect(pages.flatMap((page) => brokenLinks(ROOT, page))).to.deep.equal([]);
  });

  it('the README links every page of docs/', () => {
    const linked = new Set(linkTargets(readFileSync(path.join(ROOT, 'README.md'), 'utf8')).map(({ target }) => target.split('#')[0]));
    const unlinked = docPages(ROOT).filter((page) => page !== 'README.md' && !linked.has(page));
    expect(unlinked).to.deep.equal([]);
  });

  describe('the checker', () => {
    let root: string;
    before(() => {
      root = mkdtempSync(path.join(tmpdir(), 'doc-links-'));
      mkdirSync(path.join(root, 'docs'));
      writeFileSync(path.join(root, 'src.ts'), '');
      writeFileSync(
        path.join(root, 'docs', 'page.md'),
        [
          '# The page',
          '## Plan changes, failed payments',
          '## Plan changes, failed payments',
          '## The `lifecycle` queue',
          '[ok](../src.ts) [ok](#the-page) [ok](#plan-changes-failed-payments-1) [ok](page.md#plan-changes-failed-payments) [ok](#the-lifecycle-queue)',
          '[ok](https://example.com/missing) [ok](mailto:ops@example.com) `[code](missing.md)`',
          '```',
          '[fenced](missing.md)',
          '```',
          '[gone](../gone.ts) [no heading](#nowhere) [out](../../../etc/passwd) ![image](img.png)',
          '[defined]: ./missing.md',
        ].join('\n'),
      );
    });
    after(() => rmSync(root, { recursive: true, force: true }));

    it('reports a missing file, a missing heading, a link out of the repository and a bad definition, and nothing else', () => {
      expect(brokenLinks(root, 'docs/page.md')).to.deep.equal([
        'docs/page.md:10 ../gone.ts (no such file)',
        'docs/page.md:10 #nowhere (no such heading)',
        'docs/page.md:10 ../../../etc/passwd (outside the repository)',
        'docs/page.md:10 img.png (no such file)',
        'docs/page.md:11 ./missing.md (no such file)',
      ]);
    });
  });
});
