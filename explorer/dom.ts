// The explorer's one DOM helper, and the small pieces every view shares.
//
// h('p', { class: 'x', text: 'hello', 'data-testid': 'y', onclick: () => ... }, ...children) builds
// an HTML element; svg('rect', { x: 1 }, ...children) the same in the SVG namespace. `text` sets
// the text; a function is an event listener (onclick -> 'click'); true is an empty attribute;
// false, null and undefined leave it out. Children may be nested in arrays; null, undefined and
// false among them are skipped.
export type Kid = Node | string | null | undefined | false;
export type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;

const SVG_NS = 'http://www.w3.org/2000/svg';

function fill<E extends Element>(e: E, attrs: Attrs, kids: (Kid | Kid[])[]): E {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') e.addEventListener(k.replace(/^on/, '').toLowerCase(), v);
    else if (k === 'text') e.textContent = String(v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false) e.append(kid);
  return e;
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...kids: (Kid | Kid[])[]): HTMLElementTagNameMap[K] {
  return fill(document.createElement(tag), attrs, kids);
}

/** h in the SVG namespace. */
export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Attrs = {}, ...kids: (Kid | Kid[])[]): SVGElementTagNameMap[K] {
  return fill(document.createElementNS(SVG_NS, tag), attrs, kids);
}

/** An error's message for people: its message, else its name, else the value as text. */
export const describe = (e: unknown) => (e instanceof Error ? e.message || e.name : String(e));

/**
 * A view's error line: the returned fail(message) shows `message` in `box` (unhidden) and in the
 * page's error area through `report` (ExplorerContext.report).
 */
export function errorLine(box: HTMLElement, report: (message: string) => void): (message: string) => void {
  return (message: string) => {
    box.textContent = message;
    box.hidden = false;
    report(message);
  };
}

/** fetch(url), with a specific error naming `what` when it cannot be fetched or does not load. */
export async function fetchOk(url: URL, what: string): Promise<Response> {
  let r: Response;
  try {
    r = await fetch(url);
  } catch (e) {
    const hint = location.protocol === 'file:' ? ' The page must be served over HTTP: run `granule explore`.' : '';
    throw new Error(`${what} (${url.pathname}) could not be fetched: ${describe(e)}.${hint}`);
  }
  if (!r.ok) throw new Error(`${what} (${url.pathname}) did not load: HTTP ${r.status} ${r.statusText}`.trimEnd());
  return r;
}
