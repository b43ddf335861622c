// The explorer's Walk view: one address through the guest page tables and the EPT, entry by
// entry, on the real simulator; an architectural access with the TLB before and after; entries
// edited in place, with the stale TLB entry that leaves behind and invlpg to drop it.
//
// data-testid (read by the end-to-end test):
//   walk-gva          the GVA input (hex); Enter walks
//   walk-kind         access kind select (read, write, fetch)
//   walk-user         privilege select (supervisor, user)
//   walk-run          "Walk" (the inspection walk: sim.inspect, changes nothing)
//   walk-access       "Access" (sim.access: sets A/D, fills the TLB)
//   walk-invlpg       "invlpg" for the GVA's page; walk-invept: INVEPT single-context
//   walk-example      each example GVA button (data-gva, data-kind, data-user)
//   walk-hpa          the walk's HPA as 0x..., empty when it faults
//   walk-fault        'none', '#PF error 0x7', 'EPT violation qualification 0x18a',
//                     'EPT misconfiguration', ... with data-kind = outcome.kind and
//                     data-code = outcome.errorCodeHex / qualificationHex ('' otherwise), the
//                     fields `granule walk --json` prints
//   walk-summary      the outcome sentence (walkfmt's summary)
//   walk-steps        the steps of the walk: one [data-step] section per step, one
//                     tr[data-ref=n] per reference (data-table, data-level, data-hpa, data-value)
//   walk-edit         each entry's "edit bits" button; in the editor: walk-edit-value (hex
//                     input), walk-edit-write (button); walk-edit-status (what the write did)
//   walk-tlb          the TLB's entry for the GVA's page now (data-hit="yes"|"no"; data-stale="yes"
//                     when an access would get a different answer from the TLB than from the tables)
//   walk-access-result  the last access: result, TLB before/after, counter deltas
//                     (data-kind, data-code, data-hpa, data-tlb="hit"|"miss")
//   walk-space-text, walk-space-load, walk-space-demo, walk-space-error: your own address space
import './walk.css';
import type { ExplorerContext, Mount } from './context.ts';
import { h } from './dom.ts';
import { loadSpace, DEMO_SPACE_JSON, DEMO_GVA, SpaceError, type Space } from '../src/describe.ts';
import { explainWalk, entryAddress, hex, hex16, type WalkReport, type WalkRef, type Outcome } from '../src/walkfmt.ts';
import { INVEPT_SINGLE } from '../src/consts.ts';
import { tlbLookup, tlbPredict, type TlbEntry } from '../src/tlbview.ts';
import type { Counters } from '../src/counters.ts';
import {
  parseGva, parseEntryValue, accOf, accessText, DEMO_EXAMPLES, faultLabel, recordLabel, outcomeHpa, walkSections,
  refStatus, bitMeaning, flagOptions, withFlag, refLabel, counterDelta, tlbRows, predictionText, staleNote, guestRows, eptRows,
  editTexts, cpuText, tlbStaleText, type AccessKind, type MappingRow,
} from './walk-model.ts';

// ---------------------------------------------------------------------------------------------
// Ids (shared with practice.ts)

let idCounter = 0;
/** A page-unique id with a readable prefix. */
export const uid = (prefix: string) => `${prefix}-${++idCounter}`;

const code = (s: string) => h('code', {}, s);

// ---------------------------------------------------------------------------------------------
// Renderers (shared with practice.ts)

/** Flag chips with a title (and a legend elsewhere) for each set bit. */
export function chips(table: 'guest' | 'ept' | 'spp', level: number, bits: string[], emptyText = 'none'): HTMLElement {
  if (bits.length === 0) return h('span', { class: 'gx-chips-none' }, emptyText);
  return h('ul', { class: 'gx-chips', 'aria-label': 'bits set' },
    bits.map((b) => h('li', {}, h('abbr', { class: `gx-chip gx-chip-${table}`, title: bitMeaning(table, level, b) }, b))));
}

export interface StepsOptions {
  /** adds an "edit bits" control to each row */
  editor?: (ref: WalkRef, row: HTMLTableRowElement) => HTMLElement;
  /** heading level of the step headings (default 4) */
  headingLevel?: 3 | 4 | 5;
}

/** The steps of a walk as headed sections with one accessible table each. */
export function renderSteps(r: WalkReport, opts: StepsOptions = {}): HTMLElement[] {
  const sections = walkSections(r);
  const hTag = `h${opts.headingLevel ?? 4}` as 'h4';
  if (sections.length === 0) return [h('p', { class: 'gx-muted' }, 'No table was read (the GVA is not canonical, so the access is refused before any walk).')];
  return sections.map((s, k) => {
    const headId = uid('gx-step');
    const table = h('table', { class: 'gx-steps-table' },
      h('caption', { class: 'gx-sr-only' }, `Step ${k + 1}: ${s.title}: the entries read, in order`),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, '#'), h('th', { scope: 'col' }, 'Entry'), h('th', { scope: 'col' }, 'Address'),
        h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Bits set'), h('th', { scope: 'col' }, 'Result'),
        opts.editor ? h('th', { scope: 'col' }, 'Edit') : null)),
    );
    const body = h('tbody', {});
    for (const ref of s.refs) {
      const st = refStatus(ref);
      const row = h('tr', {
        class: `gx-ref gx-ref-${ref.table} gx-status-${st.status}`, 'data-ref': ref.n, 'data-table': ref.table, 'data-level': ref.level,
        'data-hpa': ref.hpa, 'data-value': ref.value,
      });
      row.append(
        h('td', { class: 'gx-num' }, String(ref.n)),
        h('th', { scope: 'row' }, ref.name, ref.table === 'ept' ? h('span', { class: 'gx-for' }, ` for ${ref.for}`) : null,
          h('span', { class: 'gx-index' }, `, index ${ref.index}`)),
        h('td', {}, code(entryAddress(ref))),
        h('td', {}, code(ref.value)),
        h('td', {}, chips(ref.table, ref.level, ref.bits, ref.notPresent ? 'none (not present)' : 'none')),
        h('td', { class: 'gx-result' }, h('strong', { class: 'gx-status' }, st.text), st.rest ? `${st.status === 'table' ? ' ' : ': '}${st.rest}` : ''),
      );
      if (opts.editor) row.append(h('td', {}, opts.editor(ref, row)));
      body.append(row);
    }
    table.append(body);
    return h('section', { class: `gx-step gx-step-${s.kind}`, 'aria-labelledby': headId, 'data-step': k + 1, 'data-kind': s.kind },
      h(hTag, { id: headId }, `Step ${k + 1} of ${sections.length}: ${s.title}`),
      h('p', { class: 'gx-step-detail' }, s.detail),
      h('div', { class: 'gx-scroll' }, table));
  });
}

/** The decoded bits of a #PF error code or an exit qualification, as a table. */
export function renderCodeBits(o: Outcome): HTMLElement | null {
  if (o.kind !== 'pf' && o.kind !== 'ept-violation') return null;
  const bits = o.bits;
  const caption = o.kind === 'pf' ? `Error code ${o.errorCodeHex}, bit by bit (SDM Vol. 3A 4.7)` : `Exit qualification ${o.qualificationHex}, bit by bit (SDM Vol. 3C Table 28-7)`;
  return h('table', { class: 'gx-bits-table' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Bit'), h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Meaning'))),
    h('tbody', {}, bits.map((b) => h('tr', { class: b.value ? 'gx-bit-on' : 'gx-bit-off' },
      h('td', {}, String(b.bit)), h('th', { scope: 'row' }, b.name), h('td', {}, `${b.value} (${b.value ? 'set' : 'clear'})`), h('td', {}, b.meaning)))));
}

/** The outcome in words: summary, reason, and for faults the decoded code. */
export function renderOutcomeDetail(o: Outcome): HTMLElement[] {
  const out: HTMLElement[] = [];
  if ('during' in o) out.push(h('p', {}, h('strong', {}, 'While: '), o.during));
  if ('reason' in o) out.push(h('p', {}, h('strong', {}, 'Why: '), o.reason));
  const bits = renderCodeBits(o);
  if (bits) out.push(h('div', { class: 'gx-scroll' }, bits));
  return out;
}

function mappingTable(caption: string, rows: MappingRow[], table: 'guest' | 'ept', empty: string): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'gx-muted' }, `${caption}: ${empty}`);
  return h('div', { class: 'gx-scroll' }, h('table', { class: 'gx-map-table' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'From'), h('th', { scope: 'col' }, 'To'), h('th', { scope: 'col' }, 'Pages'),
      h('th', { scope: 'col' }, 'Leaf bits'), h('th', { scope: 'col' }, 'Note'))),
    h('tbody', {}, rows.map((r) => h('tr', {},
      h('th', { scope: 'row' }, code(r.from)), h('td', {}, code(r.to)), h('td', {}, r.pages),
      h('td', {}, chips(table, r.level, r.bits, 'none: not present')), h('td', {}, r.note))))));
}

/** The address space's mappings, edits and vCPU settings (shared with practice.ts). */
export function renderSpaceSummary(space: Space, opts: { headingLevel?: 3 | 4 } = {}): HTMLElement[] {
  const d = space.description;
  const hTag = `h${opts.headingLevel ?? 4}` as 'h4';
  const edits = editTexts(d);
  const t = space.tables;
  return [
    mappingTable('Guest page tables: GVA -> GPA', guestRows(d), 'guest', 'no mappings'),
    mappingTable('EPT: GPA -> HPA', eptRows(d), 'ept', 'no mappings'),
    h('p', { class: 'gx-muted' }, `The guest's own page tables: ${t.gpaFrames} frames at GPA ${hex(t.gpa)}, mapped R/W (4 KiB) in the EPT by the loader. `
      + `All table frames are at HPA ${hex(t.hpa)}. CR3 ${hex(space.cr3)}, EPTP ${hex(space.eptp)}.`),
    edits.length ? h('div', {}, h(hTag, {}, 'Entries changed after mapping'), h('ul', {}, edits.map((e) => h('li', {}, e)))) : null,
    h('div', {}, h(hTag, {}, 'vCPU settings'), h('ul', { class: 'gx-cpu' }, cpuText(d).map((c) => h('li', {}, c)))),
  ].filter((x): x is HTMLElement => x !== null);
}

// ---------------------------------------------------------------------------------------------
// The view


interface Current { gva: bigint; kind: AccessKind; user: boolean; report: WalkReport }

export const mountWalk: Mount = async (root: HTMLElement, ctx: ExplorerContext) => {
  const simOptions = { wasm: ctx.wasm };
  let space: Space = await loadSpace(DEMO_SPACE_JSON, '<demo space>', simOptions);
  let isDemo = true;
  let current: Current | null = null;
  let tlbBroken = false;

  root.classList.add('gx-walk');

  // --- controls -------------------------------------------------------------------------------
  const gvaId = uid('gx-gva'), kindId = uid('gx-kind'), userId = uid('gx-user'), gvaErrId = uid('gx-gva-err');
  const gvaInput = h('input', {
    id: gvaId, type: 'text', value: hex(DEMO_GVA), spellcheck: 'false', autocomplete: 'off', inputmode: 'text',
    'data-testid': 'walk-gva', 'aria-describedby': gvaErrId, class: 'gx-mono', size: 20,
  });
  const kindSelect = h('select', { id: kindId, 'data-testid': 'walk-kind' },
    h('option', { value: 'read' }, 'read'), h('option', { value: 'write' }, 'write'), h('option', { value: 'fetch' }, 'instruction fetch'));
  const userSelect = h('select', { id: userId, 'data-testid': 'walk-user' },
    h('option', { value: 'supervisor' }, 'supervisor (CPL 0)'), h('option', { value: 'user' }, 'user (CPL 3)'));
  const gvaError = h('p', { id: gvaErrId, class: 'gx-field-error', role: 'alert' });
  const walkButton = h('button', { type: 'submit', class: 'gx-primary', 'data-testid': 'walk-run' }, 'Walk');
  const accessButton = h('button', { type: 'button', 'data-testid': 'walk-access', onclick: () => doAccess() }, 'Access');
  const invlpgButton = h('button', { type: 'button', 'data-testid': 'walk-invlpg', onclick: () => doInvlpg() }, 'invlpg');
  const inveptButton = h('button', { type: 'button', 'data-testid': 'walk-invept', onclick: () => doInvept() }, 'INVEPT');
  const form = h('form', { class: 'gx-controls', 'aria-label': 'Walk controls', onsubmit: (ev: Event) => { ev.preventDefault(); doWalk(); } },
    h('div', { class: 'gx-field' }, h('label', { for: gvaId }, 'Guest-virtual address (hex)'), gvaInput),
    h('div', { class: 'gx-field' }, h('label', { for: kindId }, 'Access'), kindSelect),
    h('div', { class: 'gx-field' }, h('label', { for: userId }, 'Privilege'), userSelect),
    h('div', { class: 'gx-buttons' }, walkButton, accessButton, invlpgButton, inveptButton),
    gvaError,
  );
  const buttonHelp = h('p', { class: 'gx-help' },
    h('strong', {}, 'Walk'), ' reads the tables and changes nothing (sim.inspect: no A/D bits, no TLB). ',
    h('strong', {}, 'Access'), ' performs the access as the CPU would (sim.access): it looks in the TLB first, walks on a miss, sets accessed/dirty flags and caches the translation. ',
    h('strong', {}, 'invlpg'), ' drops the TLB entries of the GVA\'s page; ', h('strong', {}, 'INVEPT'), ' (single-context) drops every translation made through this EPT.');

  const examplesList = h('ul', { class: 'gx-examples' });
  const examples = h('div', { class: 'gx-examples-box' }, h('h3', {}, 'Examples in the demo space'), examplesList);
  for (const ex of DEMO_EXAMPLES) {
    examplesList.append(h('li', {}, h('button', {
      type: 'button', class: 'gx-example', 'data-testid': 'walk-example', 'data-gva': hex(ex.gva), 'data-kind': ex.kind, 'data-user': String(ex.user),
      onclick: () => {
        gvaInput.value = hex(ex.gva); kindSelect.value = ex.kind; userSelect.value = ex.user ? 'user' : 'supervisor';
        doWalk();
      },
    }, h('code', {}, hex(ex.gva)), ` ${accessText(ex.kind, ex.user)}`), ` ${ex.what}`));
  }

  // --- results ----------------------------------------------------------------------------------
  const summary = h('p', { class: 'gx-summary', 'data-testid': 'walk-summary', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' });
  const hpaOut = h('output', { class: 'gx-mono', 'data-testid': 'walk-hpa' });
  const faultOut = h('output', { class: 'gx-mono', 'data-testid': 'walk-fault', 'data-kind': '', 'data-code': '' });
  const outcomeDetail = h('div', { class: 'gx-outcome-detail' });
  const outcomeHead = uid('gx-outcome');
  const outcome = h('section', { class: 'gx-outcome', 'aria-labelledby': outcomeHead },
    h('h3', { id: outcomeHead }, 'Outcome of the walk'), summary,
    h('dl', { class: 'gx-dl' }, h('dt', {}, 'HPA'), h('dd', {}, hpaOut), h('dt', {}, 'Fault'), h('dd', {}, faultOut)),
    outcomeDetail);

  const stepsInfo = h('p', { class: 'gx-muted' });
  const steps = h('div', { class: 'gx-steps', 'data-testid': 'walk-steps' });
  const editStatus = h('p', { class: 'gx-edit-status', role: 'status', 'aria-live': 'polite', 'data-testid': 'walk-edit-status', tabindex: '-1' });
  const stepsHead = uid('gx-steps');
  const stepsBox = h('section', { 'aria-labelledby': stepsHead },
    h('h3', { id: stepsHead }, 'The walk, step by step'),
    h('p', { class: 'gx-help' }, 'Every guest page-table entry lives at a guest-physical address, so before the CPU can read it, it translates that GPA through the EPT (4 EPT entries). '
      + 'Four guest levels, then the data\'s own GPA: 4 x (4 + 1) + 4 = 24 reads for 4 KiB pages. Hover or focus a bit for its meaning; "Edit bits" writes an entry in the simulated memory.'),
    stepsInfo, editStatus, steps);

  const tlbBox = h('div', { 'data-testid': 'walk-tlb', 'data-hit': 'no' });
  const tlbHead = uid('gx-tlb');
  const tlbSection = h('section', { class: 'gx-tlb', 'aria-labelledby': tlbHead }, h('h3', { id: tlbHead }, 'The TLB for this page, now'), tlbBox);

  const accessLine = h('p', { class: 'gx-summary', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' }, 'No access yet: press Access to perform one.');
  const accessDetail = h('div', {});
  const accessResult = h('div', { 'data-testid': 'walk-access-result' }, accessLine, accessDetail);
  const resetAccess = (text: string) => {
    accessLine.textContent = text;
    accessDetail.replaceChildren();
    for (const k of ['kind', 'code', 'hpa', 'tlb']) delete accessResult.dataset[k];
  };
  const accessHead = uid('gx-access');
  const accessSection = h('section', { class: 'gx-access', 'aria-labelledby': accessHead }, h('h3', { id: accessHead }, 'Last access'), accessResult);

  // --- the address space ------------------------------------------------------------------------
  const spaceTextId = uid('gx-space-text'), spaceErrId = uid('gx-space-err');
  const spaceText = h('textarea', {
    id: spaceTextId, rows: 18, spellcheck: 'false', class: 'gx-mono', 'data-testid': 'walk-space-text', 'aria-describedby': spaceErrId,
  });
  spaceText.value = DEMO_SPACE_JSON;
  const spaceError = h('p', { id: spaceErrId, class: 'gx-field-error', role: 'alert', 'data-testid': 'walk-space-error' });
  const spaceNotes = h('ul', { class: 'gx-notes' });
  const spaceSummary = h('div', { class: 'gx-space-summary' });
  const spaceName = h('span', {}, 'the demo space');
  const spaceBox = h('details', { class: 'gx-space' },
    h('summary', {}, 'Address space: ', spaceName, ' (its mappings, or load your own)'),
    spaceSummary,
    h('h4', {}, 'Load your own'),
    h('p', { class: 'gx-help' }, 'An address-space file (JSON, as docs/address-space.md describes; the demo space is a good start). Loading builds a new simulator with these tables.'),
    h('label', { for: spaceTextId }, 'Address-space JSON'), spaceText, spaceError,
    h('div', { class: 'gx-buttons' },
      h('button', { type: 'button', 'data-testid': 'walk-space-load', onclick: () => loadOwn() }, 'Load this space'),
      h('button', { type: 'button', 'data-testid': 'walk-space-demo', onclick: () => loadDemo() }, 'Back to the demo space')),
    spaceNotes);

  root.append(
    h('h2', {}, 'Walk: one address, two dimensions'),
    h('p', { class: 'gx-intro' }, 'A guest-virtual address (GVA) goes through the guest\'s page tables to a guest-physical address (GPA), and every GPA, including those of the guest\'s own tables, goes through the host\'s EPT to a host-physical address (HPA). This is the simulator granule uses, running in your browser.'),
    form, buttonHelp, examples, outcome, accessSection, tlbSection, stepsBox, spaceBox,
  );

  // --- behaviour --------------------------------------------------------------------------------
  const selected = () => ({ kind: kindSelect.value as AccessKind, user: userSelect.value === 'user' });

  function readGva(): bigint | null {
    try {
      const v = parseGva(gvaInput.value);
      gvaError.textContent = '';
      gvaInput.removeAttribute('aria-invalid');
      return v;
    } catch (e) {
      gvaError.textContent = (e as Error).message;
      gvaInput.setAttribute('aria-invalid', 'true');
      gvaInput.focus();
      return null;
    }
  }

  function showOutcome(r: WalkReport) {
    const o = r.outcome;
    const label = faultLabel(o);
    summary.textContent = `${r.access.text} of GVA ${r.gva}: ${o.summary}`;
    summary.dataset.kind = o.kind;
    hpaOut.textContent = outcomeHpa(o);
    faultOut.textContent = label.text;
    faultOut.dataset.kind = label.kind;
    faultOut.dataset.code = label.code;
    outcome.dataset.kind = o.kind;
    outcomeDetail.replaceChildren(...renderOutcomeDetail(o));
  }

  function walkNow(gva: bigint, kind: AccessKind, user: boolean): WalkReport {
    const r = explainWalk(space.sim, gva, accOf(kind, user));
    current = { gva, kind, user, report: r };
    showOutcome(r);
    stepsInfo.textContent = `${r.access.text} of GVA ${r.gva} (PML4 index ${r.indices.pml4}, PDPT ${r.indices.pdpt}, PD ${r.indices.pd}, PT ${r.indices.pt}, offset ${r.indices.offset}); `
      + `${r.counts.total} entries read: ${r.counts.guest} guest, ${r.counts.ept} EPT${r.counts.spp ? `, ${r.counts.spp} SPP` : ''}. CR3 ${r.cpu.cr3}, EPTP ${r.cpu.eptp}.`;
    steps.replaceChildren(...renderSteps(r, { editor: editorFor }));
    showTlb(gva, kind, user);
    return r;
  }

  function doWalk() {
    const gva = readGva();
    if (gva === null) return;
    const { kind, user } = selected();
    walkNow(gva, kind, user);
  }

  function tlbEntry(gva: bigint): TlbEntry | null | undefined {
    if (tlbBroken) return undefined;
    try {
      return tlbLookup(space.sim, gva);
    } catch (e) {
      tlbBroken = true;
      ctx.report(`The TLB view is unavailable: ${(e as Error).message}`);
      return undefined;
    }
  }

  function tlbTable(caption: string, cols: { head: string; e: TlbEntry | null | undefined }[]): HTMLElement {
    const rowsOf = cols.map((c) => (c.e === undefined ? [['entry for this page', 'unknown (TLB view unavailable)']] as [string, string][] : tlbRows(c.e)));
    const labels = [...new Set(rowsOf.flatMap((rs) => rs.map(([l]) => l)))];
    return h('div', { class: 'gx-scroll' }, h('table', { class: 'gx-tlb-table' },
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, h('td', {}), cols.map((c) => h('th', { scope: 'col' }, c.head)))),
      h('tbody', {}, labels.map((l) => h('tr', {}, h('th', { scope: 'row' }, l),
        rowsOf.map((rs) => h('td', {}, rs.find(([x]) => x === l)?.[1] ?? '—')))))));
  }

  function showTlb(gva: bigint, kind: AccessKind, user: boolean) {
    const e = tlbEntry(gva);
    tlbBox.dataset.hit = e ? 'yes' : 'no';
    tlbBox.dataset.stale = 'no';
    const cpu = space.sim.cpu();
    const kids: (HTMLElement | null)[] = [
      h('p', {}, e ? `The TLB holds a translation for the page of GVA ${hex(gva)} (VPID ${cpu.vpid}, EPTP ${hex(cpu.eptp)}).`
        : e === null ? `The TLB holds nothing for the page of GVA ${hex(gva)} in this context (VPID ${cpu.vpid}).` : 'The TLB contents cannot be shown.'),
      e !== undefined ? tlbTable(`TLB entry for GVA page ${hex(gva & ~0xfffn)}`, [{ head: 'now', e }]) : null,
    ];
    if (e !== undefined) {
      try {
        const pred = tlbPredict(space.sim, gva, accOf(kind, user), cpu);
        kids.push(h('p', { class: 'gx-prediction' }, predictionText(pred, kind, user)));
        const stale = current ? tlbStaleText(pred, current.report.outcome) : '';
        tlbBox.dataset.stale = stale ? 'yes' : 'no';
        if (stale) kids.push(h('p', { class: 'gx-warn' }, h('strong', {}, 'Stale: '), `${stale}. The CPU does not watch its tables: press invlpg to drop the entry.`));
      } catch { /* reported once by tlbEntry */ }
    }
    tlbBox.replaceChildren(...kids.filter((k): k is HTMLElement => k !== null));
  }

  function doAccess() {
    const gva = readGva();
    if (gva === null) return;
    const { kind, user } = selected();
    const acc = accOf(kind, user);
    const before = tlbEntry(gva);
    const c0: Counters = space.sim.counters();
    const res = space.sim.access(gva, acc, 1);
    const c1: Counters = space.sim.counters();
    const after = tlbEntry(gva);
    const label = recordLabel(res.fault);
    const hpa = res.fault ? '' : hex(res.hpa);
    const r = walkNow(gva, kind, user); // the tables as the access left them
    const hit = c1.tlbHits! > c0.tlbHits!;
    const walked = c1.walks! > c0.walks!;
    const stale = staleNote({ label, hpa }, { label: faultLabel(r.outcome), hpa: outcomeHpa(r.outcome) }, hit && !walked);
    const how = hit && !walked ? 'TLB hit: no table was read' : walked ? `TLB ${hit ? 'hit, but it walked again' : 'miss'}: walked the tables, ${(c1.guestRefs! - c0.guestRefs!) + (c1.eptRefs! - c0.eptRefs!)} entries read` : 'no walk';
    accessResult.dataset.kind = label.kind;
    accessResult.dataset.code = label.code;
    accessResult.dataset.hpa = hpa;
    accessResult.dataset.tlb = hit && !walked ? 'hit' : 'miss';
    const deltas = counterDelta(c0, c1);
    accessLine.replaceChildren(`${accessText(kind, user)} of 1 byte at GVA ${hex(gva)}: `, h('strong', {}, res.fault ? label.text : `HPA ${hpa}`), ` (${how}).`);
    accessDetail.replaceChildren(
      ...(stale ? [h('p', { class: 'gx-warn' }, h('strong', {}, 'Note: '), stale)] : []),
      tlbTable('The TLB entry for this page, before and after', [{ head: 'before', e: before }, { head: 'after', e: after }]),
      h('div', { class: 'gx-scroll' }, h('table', { class: 'gx-counters' },
        h('caption', {}, 'Counters (this access)'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Counter'), h('th', { scope: 'col' }, 'Before'), h('th', { scope: 'col' }, 'After'), h('th', { scope: 'col' }, 'Change'))),
        h('tbody', {}, deltas.map((d) => h('tr', { class: d.delta ? 'gx-changed' : '', 'data-counter': d.key },
          h('th', { scope: 'row' }, d.label), h('td', {}, String(d.before)), h('td', {}, String(d.after)), h('td', {}, d.delta ? `+${d.delta}` : '0')))))),
    );
  }

  function doInvlpg() {
    const gva = readGva();
    if (gva === null) return;
    const had = tlbEntry(gva);
    space.sim.invlpg(gva);
    editStatus.textContent = `invlpg ${hex(gva)}: ${had ? 'the TLB entry for this page is dropped' : 'there was no TLB entry for this page'}; the next access walks the tables.`;
    const { kind, user } = selected();
    walkNow(gva, kind, user);
  }

  function doInvept() {
    const gva = readGva();
    if (gva === null) return;
    const cpu = space.sim.cpu();
    space.sim.invept(INVEPT_SINGLE, cpu.eptp);
    editStatus.textContent = `INVEPT single-context (EPTP ${hex(cpu.eptp)}): every translation made through this EPT is dropped.`;
    const { kind, user } = selected();
    walkNow(gva, kind, user);
  }

  // --- entry editors ----------------------------------------------------------------------------
  function editorFor(ref: WalkRef, row: HTMLTableRowElement): HTMLElement {
    if (ref.table === 'spp' || BigInt(ref.hpa) + 8n > BigInt(space.sim.physBytes)) return h('span', { class: 'gx-muted' }, '—');
    const edId = uid('gx-editor');
    const button = h('button', {
      type: 'button', class: 'gx-edit', 'data-testid': 'walk-edit', 'aria-expanded': 'false',
      'aria-label': `Edit bits of ${refLabel(ref)}`,
    }, 'Edit bits');
    button.addEventListener('click', () => {
      const open = row.nextElementSibling?.id === edId;
      const shut = () => { button.setAttribute('aria-expanded', 'false'); button.removeAttribute('aria-controls'); };
      if (open) { row.nextElementSibling!.remove(); shut(); return; }
      row.after(editorRow(ref, edId, row.children.length, () => { shut(); button.focus(); }));
      button.setAttribute('aria-expanded', 'true');
      button.setAttribute('aria-controls', edId);
      (row.nextElementSibling!.querySelector('input') as HTMLInputElement | null)?.focus();
    });
    return button;
  }

  function editorRow(ref: WalkRef, id: string, span: number, closed: () => void): HTMLTableRowElement {
    const table = ref.table as 'guest' | 'ept';
    const hpa = BigInt(ref.hpa);
    let value = space.sim.read64(hpa);
    const valId = uid('gx-edit-val'), errId = uid('gx-edit-err');
    const valueInput = h('input', { id: valId, type: 'text', class: 'gx-mono', value: hex16(value), size: 20, spellcheck: 'false', 'data-testid': 'walk-edit-value', 'aria-describedby': errId });
    const err = h('p', { id: errId, class: 'gx-field-error', role: 'alert' });
    const boxes = flagOptions(table, ref.level).map((f) => {
      const boxId = uid('gx-flag');
      const box = h('input', { type: 'checkbox', id: boxId, 'data-flag': f.name, 'data-bit': f.bit });
      box.checked = (value & f.mask) !== 0n;
      box.addEventListener('change', () => {
        value = withFlag(value, f.mask, box.checked);
        valueInput.value = hex16(value);
        err.textContent = '';
      });
      return { f, box, el: h('label', { for: boxId, class: 'gx-flag', title: f.title }, box, ` ${f.name}`, h('span', { class: 'gx-bitno' }, ` (bit ${f.bit})`)) };
    });
    valueInput.addEventListener('input', () => {
      try {
        value = parseEntryValue(valueInput.value);
        err.textContent = '';
        valueInput.removeAttribute('aria-invalid');
        for (const b of boxes) b.box.checked = (value & b.f.mask) !== 0n;
      } catch (e) {
        err.textContent = (e as Error).message;
        valueInput.setAttribute('aria-invalid', 'true');
      }
    });
    const close = () => { tr.remove(); closed(); };
    const write = () => {
      let v: bigint;
      try {
        v = parseEntryValue(valueInput.value);
      } catch (e) {
        err.textContent = (e as Error).message;
        valueInput.setAttribute('aria-invalid', 'true');
        valueInput.focus();
        return;
      }
      const old = space.sim.read64(hpa);
      space.sim.write64(hpa, v);
      afterEdit(ref, old, v);
    };
    const legendText = `Edit ${refLabel(ref)} at HPA ${ref.hpa}`;
    const fieldset = h('fieldset', { class: 'gx-editor' },
      h('legend', {}, legendText),
      h('div', { class: 'gx-flags', role: 'group', 'aria-label': 'flag bits' }, boxes.map((b) => b.el)),
      h('div', { class: 'gx-field' }, h('label', { for: valId }, 'Whole entry (hex, 64 bits: address and every bit)'), valueInput),
      err,
      h('div', { class: 'gx-buttons' },
        h('button', { type: 'button', class: 'gx-primary', 'data-testid': 'walk-edit-write', onclick: write }, 'Write to memory'),
        h('button', { type: 'button', onclick: close }, 'Cancel')));
    fieldset.addEventListener('keydown', (ev) => {
      const k = ev as KeyboardEvent;
      if (k.key === 'Escape') { k.preventDefault(); close(); }
      if (k.key === 'Enter' && (k.target as HTMLElement) === valueInput) { k.preventDefault(); write(); }
    });
    const tr = h('tr', { id, class: 'gx-editor-row' }, h('td', { colspan: span }, fieldset));
    return tr;
  }

  function afterEdit(ref: WalkRef, old: bigint, v: bigint) {
    if (!current) return;
    const { gva, kind, user } = current;
    const cached = tlbEntry(gva);
    const r = walkNow(gva, kind, user);
    const tlbWords = cached
      ? `The TLB still caches the old translation for the page of ${hex(gva)} (the CPU does not notice writes to its tables): an access now uses it. `
        + 'Press invlpg (or INVEPT for an EPT entry) to drop it, then Access again to see the change.'
      : `The TLB holds no translation for the page of ${hex(gva)}, so the next access walks the tables and sees the change.`;
    editStatus.textContent = `Wrote ${hex16(v)} to ${refLabel(ref)} at HPA ${ref.hpa} (was ${hex16(old)}). The walk below reads the tables, so it shows the change at once: ${faultLabel(r.outcome).text === 'none' ? `HPA ${outcomeHpa(r.outcome)}` : faultLabel(r.outcome).text}. ${tlbWords}`;
    editStatus.focus();
  }

  // --- the address space ------------------------------------------------------------------------
  function showSpace(name: string) {
    spaceName.textContent = name;
    spaceSummary.replaceChildren(...renderSpaceSummary(space));
    spaceNotes.replaceChildren(...space.warnings.map((w) => h('li', {}, `Note: ${w}`)));
    examples.hidden = !isDemo;
  }

  async function loadOwn() {
    const text = spaceText.value;
    try {
      const s = await loadSpace(text, 'your space', simOptions);
      space = s;
      isDemo = false;
      spaceError.textContent = '';
      spaceText.removeAttribute('aria-invalid');
      showSpace('your space');
      const first = s.description.guest[0];
      gvaInput.value = hex(first ? first.gva : 0n);
      walkNow(first ? first.gva : 0n, selected().kind, selected().user);
      resetAccess('A new simulator: no access yet.');
      editStatus.textContent = `Loaded your space: ${s.description.guest.length} guest and ${s.description.ept.length} EPT mappings${s.warnings.length ? `, ${s.warnings.length} note(s) below` : ''}.`;
    } catch (e) {
      const msg = (e as Error).message;
      spaceError.textContent = msg;
      spaceText.setAttribute('aria-invalid', 'true');
      ctx.report(`Address space not loaded: ${msg}`);
      if (e instanceof SpaceError && e.line > 0) {
        const lines = text.split('\n');
        const at = lines.slice(0, e.line - 1).reduce((n, l) => n + l.length + 1, 0) + Math.max(0, e.column - 1);
        spaceText.focus();
        spaceText.setSelectionRange(at, Math.min(text.length, at + 1));
      }
    }
  }

  async function loadDemo() {
    space = await loadSpace(DEMO_SPACE_JSON, '<demo space>', simOptions);
    isDemo = true;
    spaceText.value = DEMO_SPACE_JSON;
    spaceError.textContent = '';
    spaceText.removeAttribute('aria-invalid');
    showSpace('the demo space');
    gvaInput.value = hex(DEMO_GVA);
    walkNow(DEMO_GVA, selected().kind, selected().user);
    resetAccess('A new simulator: no access yet.');
    editStatus.textContent = 'The demo space, rebuilt: a fresh simulator with an empty TLB.';
  }

  showSpace('the demo space');
  walkNow(DEMO_GVA, 'read', false);
};

