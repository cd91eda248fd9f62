/**
 * What makes a well-formed JSON body unsafe to keep: nesting deeper than any real payload (Postgres refuses it as
 * jsonb, and walking it recursively overflows the stack) and the NUL character (`\u0000`, which jsonb and text
 * columns refuse). Read off the raw text in one pass, before anything parses or stores it.
 */

/** Deeper than any event Stripe or a webhook source sends (Stripe's are under 10). */
export const MAX_JSON_DEPTH = 64;

/** Why the JSON text cannot be kept, or undefined when it can (its syntax is JSON.parse's to judge). */
export function jsonShapeProblem(text: string, maxDepth = MAX_JSON_DEPTH): string | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0) return 'it holds a NUL character';
    if (inString) {
      if (c === 0x5c /* \ */) {
        if (text.startsWith('u0000', i + 1)) return 'it holds a NUL character (\\u0000)';
        i++; // the escaped character
      } else if (c === 0x22 /* " */) {
        inString = false;
      }
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > maxDepth) return `it nests deeper than ${maxDepth} levels`;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    }
  }
  return undefined;
}
