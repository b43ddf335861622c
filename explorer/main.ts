// The explorer's shell (explorer/README.md): loads the simulator module and the trace index once,
// builds the ExplorerContext, and runs the tabs. Each view is mounted into its section the first
// time its tab is shown (a hidden section has no layout to measure), so a view that fails costs
// only its own tab: the failure is shown in the error area and in the section, never a blank page.
//
// What tests can wait for: <html data-explorer="ready"> (or "failed") once loading is over, and on
// each section data-state="mounting" | "ready" | "failed".
import './base.css';
import type { ExplorerContext, TraceEntry } from './context.ts';
import { VIEWS, type View } from './views.ts';
import { describe, fetchOk } from './dom.ts';

const byId = <T extends HTMLElement>(id: string): T | null => document.getElementById(id) as T | null;

// ---------------------------------------------------------------------------------------------
// The error area

function errorArea() {
  let box = byId<HTMLDivElement>('errors');
  if (!box) {
    box = document.createElement('div');
    box.id = 'errors';
    box.className = 'errors';
    box.setAttribute('role', 'alert');
    box.hidden = true;
    box.append(document.createElement('ul'));
    document.body.prepend(box);
  }
  const list = box.querySelector('ul')!;
  byId('errors-clear')?.addEventListener('click', () => {
    list.replaceChildren();
    box!.hidden = true;
  });
  return (message: string) => {
    const li = document.createElement('li');
    li.textContent = message;
    list.append(li);
    box!.hidden = false;
    console.warn(`granule explorer: ${message}`);
  };
}

const report = errorArea();

// Whatever escapes a view (an event handler, a promise nobody awaited) still reaches the page.
window.addEventListener('error', (ev) => {
  if (ev.error !== undefined || ev.message) report(`Unexpected error: ${ev.error ? describe(ev.error) : ev.message}`);
});
window.addEventListener('unhandledrejection', (ev) => {
  report(`Unexpected error: ${describe(ev.reason)}`);
});

// ---------------------------------------------------------------------------------------------
// Tabs

interface Tab { view: View; tab: HTMLButtonElement; panel: HTMLElement }

function buildTabs(): Tab[] {
  const list = byId<HTMLDivElement>('tabs')!;
  const known = new Set(VIEWS.map((v) => v.id));
  // index.html lists the views it was written with; keep its elements in step with VIEWS.
  // (forEach: the DOM lib here has no iterable NodeList)
  list.querySelectorAll<HTMLElement>('[role=tab]').forEach((el) => { if (!known.has(el.id.replace(/^tab-/, ''))) el.remove(); });
  document.querySelectorAll<HTMLElement>('[role=tabpanel]').forEach((el) => { if (!known.has(el.id.replace(/^panel-/, ''))) el.remove(); });

  let lastPanel: HTMLElement | null = null;
  return VIEWS.map((view) => {
    let tab = byId<HTMLButtonElement>(`tab-${view.id}`);
    if (!tab) {
      tab = document.createElement('button');
      tab.type = 'button';
      tab.id = `tab-${view.id}`;
      tab.setAttribute('role', 'tab');
      tab.setAttribute('aria-controls', `panel-${view.id}`);
      tab.textContent = view.title;
    }
    list.append(tab); // in VIEWS order
    let panel = byId<HTMLElement>(`panel-${view.id}`);
    if (!panel) {
      panel = document.createElement('section');
      panel.id = `panel-${view.id}`;
      panel.setAttribute('role', 'tabpanel');
      panel.setAttribute('aria-labelledby', tab.id);
      panel.tabIndex = 0;
      panel.dataset.view = view.id;
      (lastPanel ?? document.getElementById('status') ?? list).after(panel);
    }
    lastPanel = panel;
    return { view, tab, panel };
  });
}

const tabs = buildTabs();

/** The view a hash names: '#granularity', or '#walk/anything-the-view-reads'. */
function fromHash(hash: string): Tab | undefined {
  const id = decodeURIComponent(hash.replace(/^#/, '')).split(/[/?&]/)[0];
  return tabs.find((t) => t.view.id === id);
}

let current: Tab | null = null;

function select(t: Tab, opts: { focus?: boolean; setHash?: boolean } = {}) {
  for (const o of tabs) {
    const on = o === t;
    o.tab.setAttribute('aria-selected', String(on));
    o.tab.tabIndex = on ? 0 : -1;
    o.panel.hidden = !on;
  }
  current = t;
  if (opts.focus) t.tab.focus();
  if (opts.setHash && fromHash(location.hash) !== t) history.replaceState(null, '', `#${t.view.id}`);
  mountWhenReady(t);
}

const list = byId<HTMLDivElement>('tabs')!;
list.addEventListener('click', (ev) => {
  const t = tabs.find((o) => o.tab === (ev.target as Element).closest('[role=tab]'));
  if (t) select(t, { setHash: true });
});
list.addEventListener('keydown', (ev) => {
  const k = tabs.findIndex((o) => o.tab === document.activeElement);
  if (k < 0) return;
  const n = tabs.length;
  const to = ({ ArrowRight: (k + 1) % n, ArrowLeft: (k - 1 + n) % n, Home: 0, End: n - 1 } as Record<string, number>)[ev.key];
  if (to === undefined) return;
  ev.preventDefault();
  select(tabs[to]!, { focus: true, setHash: true });
});
window.addEventListener('hashchange', () => {
  const t = fromHash(location.hash);
  if (t && t !== current) select(t);
});

// ---------------------------------------------------------------------------------------------
// Loading and mounting

let ctx: ExplorerContext | null = null;
let loadFailed = false;
const mounted = new Set<Tab>();

function panelMessage(panel: HTMLElement, text: string) {
  const p = document.createElement('p');
  p.className = 'view-error';
  p.textContent = text;
  panel.append(p);
}

function mountWhenReady(t: Tab) {
  if (!ctx || mounted.has(t)) return;
  mounted.add(t);
  const { view, panel } = t;
  panel.dataset.state = 'mounting';
  panel.setAttribute('aria-busy', 'true');
  const c = ctx;
  Promise.resolve()
    .then(() => view.mount(panel, c))
    .then(() => {
      panel.dataset.state = 'ready';
    }, (e: unknown) => {
      panel.dataset.state = 'failed';
      report(`The ${view.title} view could not start: ${describe(e)}`);
      panelMessage(panel, `This view could not start (${describe(e)}). The other tabs still work.`);
    })
    .finally(() => panel.removeAttribute('aria-busy'));
}

function checkTraces(data: unknown): TraceEntry[] {
  if (!Array.isArray(data)) throw new Error('traces.json is not a list of traces');
  return data.filter((t): t is TraceEntry => t && typeof t.name === 'string' && typeof t.file === 'string'
    && typeof t.bytes === 'number' && typeof t.events === 'number' && typeof t.description === 'string');
}

async function start() {
  const base = new URL('.', location.href);
  const status = byId('status');
  const [wasm, traces] = await Promise.all([
    fetchOk(new URL('sim.release.wasm', base), 'The simulator module').then(async (r) => {
      const bytes = await r.arrayBuffer();
      if (!WebAssembly.validate(bytes)) throw new Error(`sim.release.wasm is not a valid WebAssembly module (${bytes.byteLength} bytes): rebuild with npm run build`);
      return bytes;
    }),
    // The page works without traces (the walk views need none): a missing index is reported, not fatal.
    fetchOk(new URL('traces.json', base), 'The trace index').then((r) => r.json()).then(checkTraces).catch((e: unknown) => {
      report(describe(e));
      return [] as TraceEntry[];
    }),
  ]).catch((e: unknown) => {
    loadFailed = true;
    report(describe(e));
    return [null, []] as const;
  });
  if (!wasm || loadFailed) {
    document.documentElement.dataset.explorer = 'failed';
    if (status) status.textContent = 'The explorer could not load the simulator: see the message above.';
    return;
  }
  ctx = { wasm, traces, base, report };
  document.documentElement.dataset.explorer = 'ready';
  status?.remove();
  if (current) mountWhenReady(current);
}

select(fromHash(location.hash) ?? tabs[0]!);
void start();
