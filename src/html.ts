/**
 * HTML written with the `html` tag: every interpolated value is escaped unless it is already Html (made by the tag or
 * by raw()), so pages and emails cannot be broken into by a customer's name or anything else they hold.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

type Value = Html | string | number | null | undefined | false | readonly Value[];

function render(value: Value): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  return new Html(strings.reduce((out, s, i) => out + s + (i < values.length ? render(values[i]!) : ''), ''));
}

/** Text known to be safe markup (a constant of ours): never anything a request or a customer supplied. */
export function raw(text: string): Html {
  return new Html(text);
}
