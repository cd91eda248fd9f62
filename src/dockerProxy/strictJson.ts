/**
 * JSON as the Docker engine (Go's encoding/json) reads it, where JSON.parse would read it otherwise. Go matches a
 * struct's field names case-insensitively (with Unicode folding: `ſ` is an `s`, `K` a `k`), and a key given twice
 * decodes into the same field: for an object the second one is merged into the first. JSON.parse keeps only the last.
 * So `{"HostConfig":{"Privileged":true},"HostConfig":{…}}` or `{"privileged":true,"Privileged":false}` would be
 * checked as one thing and run as another: a body holding two keys that fold alike, in any object, is refused.
 */

/** Folds a key as Go does when it matches field names (and some more, which only refuses more). */
export function foldKey(key: string): string {
  return key.toUpperCase().toLowerCase();
}

/** The parsed value, or why it is refused (not JSON, or a key twice in an object). */
export function parseStrictJson(text: string): { value: unknown } | { problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { problem: 'the body is not valid JSON' };
  }
  const twice = repeatedKey(text);
  return twice === undefined ? { value } : { problem: `the body gives the key "${twice}" twice in one object (keys are matched ignoring case)` };
}

/**
 * The first key that an object of this (valid) JSON text holds twice, folded; undefined when none does. One pass
 * with a stack of the keys seen per open object: no recursion, so deep nesting cannot overflow the stack.
 */
function repeatedKey(text: string): string | undefined {
  // One entry per open container: the keys seen for an object, null for an array.
  const open: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{') {
      open.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      open.push(null);
    } else if (c === '}' || c === ']') {
      open.pop();
    } else if (c === ',') {
      expectKey = open[open.length - 1] instanceof Set;
    } else if (c === '"') {
      const end = stringEnd(text, i);
      if (expectKey) {
        const key = foldKey(JSON.parse(text.slice(i, end + 1)) as string);
        const keys = open[open.length - 1] as Set<string>;
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
      i = end;
    }
  }
  return undefined;
}

/** The index of the quote that closes the string opening at `start`. */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return text.length - 1;
}
