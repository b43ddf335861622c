// The Alias planes view: one slab frame of the spread layout, built on the simulator in this page.
// Its K slots are reached through K virtual pages V(f, j); each guest PTE maps V(f, j) to the plane
// page of j's group leader, and all K plane pages map the same host frame in the EPT. Changing the
// unit size regroups the frame between epochs (MonitoredSpace.setGranularity): the view diffs the
// tables before and after and shows that guest PTEs were rewritten while no EPT entry and no byte
// changed.
//
// data-testid (for test/explorer.test.ts):
//   planes-class         <select> of the size class (64 ... 2048); a new class builds a new space
//   planes-unit          <select> of the unit size in bytes (class ... 4096)
//   planes-ptes-changed  "n guest PTEs rewritten: ..."; data-value = PTEs whose value changed,
//                        data-retargeted = those now mapping another plane page (setGranularity's count)
//   planes-ept-changed   "0 EPT entries changed"; data-value = the count
//   planes-bytes-changed "0 bytes of the frame changed"; data-value = the count
//   planes-table         one row per slot j: V(f, j), its PTE, the plane page it maps; plane page j and its EPT entry
//   planes-diagram       the mapping drawn as SVG (V pages -> plane pages -> the host frame)
import './planes.css';
import { h, svg, describe, errorLine } from './dom.ts';
import type { ExplorerContext, Mount } from './context.ts';
import { PlanesLab, PLANE_CLASSES, unitsFor, diffSnapshots, diffText, type PlanesSnapshot, type PlanesDiff } from './planes-model.ts';
import { guestBits, eptBits, hex, hex16 } from '../src/walkfmt.ts';
import { bitMeaning } from './walk-model.ts';

/** A few bytes of a slot, in hex and as text. */
function bytesText(b: Uint8Array): string {
  const head = [...b.subarray(0, 8)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
  const text = [...b.subarray(0, 8)].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
  return `${head} “${text}”`;
}

export const mountPlanes: Mount = async (root: HTMLElement, ctx: ExplorerContext) => {
  root.classList.add('planes');
  const classSelect = h('select', { id: 'planes-class', 'data-testid': 'planes-class' });
  for (const c of PLANE_CLASSES) classSelect.append(h('option', { value: c, text: `${c} B (${4096 / c} slots per frame)` }));
  classSelect.value = '256';
  const unitSelect = h('select', { id: 'planes-unit', 'data-testid': 'planes-unit', 'aria-describedby': 'planes-unit-help' });
  const summary = h('p', { class: 'planes-summary' });
  const ptesChanged = h('p', { 'data-testid': 'planes-ptes-changed', class: 'planes-diff-line' });
  const eptChanged = h('p', { 'data-testid': 'planes-ept-changed', class: 'planes-diff-line' });
  const bytesChanged = h('p', { 'data-testid': 'planes-bytes-changed', class: 'planes-diff-line' });
  const diffBox = h('div', { class: 'planes-diff', role: 'status', 'aria-live': 'polite' }, ptesChanged, eptChanged, bytesChanged);
  const diagram = h('div', { class: 'planes-diagram', 'data-testid': 'planes-diagram' });
  const table = h('table', { class: 'planes-table', 'data-testid': 'planes-table' });
  const errorBox = h('p', { class: 'planes-error', role: 'alert', hidden: true });

  root.append(
    h('p', { class: 'planes-intro' },
      'A slab frame of the spread layout holds K objects of one size class, one per slot. Slot j is reached only through its own virtual page V(f, j), ',
      'and all K virtual pages map the same host frame through K alias planes: the guest PTE of V(f, j) points at the plane page of j\'s group leader, ',
      'and every plane page maps the frame in the EPT. Grouping m slots in one unit is a matter of guest PTEs alone.'),
    h('div', { class: 'planes-controls' },
      h('label', { for: 'planes-class', text: 'Size class' }), classSelect,
      h('label', { for: 'planes-unit', text: 'Unit size' }), unitSelect,
      h('p', { class: 'planes-help', id: 'planes-unit-help', text: 'Regroups the frame between epochs (MonitoredSpace.setGranularity); the changes are highlighted below.' })),
    errorBox, summary, diffBox,
    h('h3', { text: 'The mapping' }), diagram,
    h('h3', { text: 'Entries' }),
    h('div', { class: 'planes-table-wrap' }, table),
  );

  let lab: PlanesLab | null = null;
  let prev: PlanesSnapshot | null = null;
  let build = 0;

  const fail = errorLine(errorBox, ctx.report);

  function fillUnits(cls: number, unit: number) {
    unitSelect.replaceChildren(...unitsFor(cls).map((u) => h('option', { value: u, text: `${u} B (${u / cls} slot${u === cls ? '' : 's'} per unit)` })));
    unitSelect.value = String(unit);
  }

  async function rebuild() {
    const cls = Number(classSelect.value);
    const my = ++build;
    errorBox.hidden = true;
    const old = lab;
    lab = null;
    await old?.close();
    let next: PlanesLab;
    try {
      next = await PlanesLab.create({ cls, wasm: ctx.wasm });
    } catch (e) {
      fail(`The alias-plane space could not be built: ${describe(e)}`);
      return;
    }
    if (my !== build) { await next.close(); return; }
    lab = next;
    fillUnits(cls, next.unit);
    const s = next.snapshot();
    prev = null;
    render(s, null);
    prev = s;
  }

  unitSelect.addEventListener('change', () => {
    if (!lab || !prev) return;
    const unit = Number(unitSelect.value);
    try {
      lab.setUnit(unit);
    } catch (e) {
      fail(`Regrouping failed: ${describe(e)}`);
      return;
    }
    const s = lab.snapshot();
    render(s, diffSnapshots(prev, s), prev);
    prev = s;
  });
  classSelect.addEventListener('change', () => { void rebuild(); });

  function render(s: PlanesSnapshot, d: PlanesDiff | null, before?: PlanesSnapshot) {
    summary.replaceChildren(
      `Frame ${s.frame} of the pool: ${s.k} slots of ${s.cls} B, so ${s.k} virtual pages and ${s.k} plane pages, all onto host frame `,
      h('code', { text: hex(s.epts[0]!.hpa) }),
      `. Unit: ${s.unit} B = ${s.group} slot${s.group === 1 ? '' : 's'}, so slot j's PTE targets the plane of its leader, j − (j mod ${s.group}).`,
    );
    if (d) {
      const t = diffText(d);
      ptesChanged.textContent = t.ptes;
      ptesChanged.dataset.value = String(d.ptes.length);
      ptesChanged.dataset.retargeted = String(d.retargeted.length);
      eptChanged.textContent = t.ept;
      eptChanged.dataset.value = String(d.epts.length);
      bytesChanged.textContent = t.bytes;
      bytesChanged.dataset.value = String(d.bytes);
      diffBox.classList.remove('planes-fresh');
    } else {
      ptesChanged.textContent = 'A fresh frame: change the unit size to see what a regroup rewrites.';
      for (const p of [ptesChanged, eptChanged, bytesChanged]) { p.removeAttribute('data-value'); p.removeAttribute('data-retargeted'); }
      eptChanged.textContent = '';
      bytesChanged.textContent = '';
      diffBox.classList.add('planes-fresh');
    }
    renderDiagram(s, d, before);
    renderTable(s, d, before);
  }

  function renderDiagram(s: PlanesSnapshot, d: PlanesDiff | null, before?: PlanesSnapshot) {
    const k = s.k;
    const row = k > 32 ? 9 : k > 16 ? 14 : 22;
    const height = k * row + 40;
    const W = 640;
    const xV = 10, wV = 170, xP = 300, wP = 170, xF = 540, wF = 90;
    const retarget = new Set(d?.retargeted ?? []);
    const g = svg('svg', { viewBox: `0 0 ${W} ${height}`, width: '100%', role: 'img', 'aria-labelledby': 'planes-diagram-title' });
    g.append(svg('title', { id: 'planes-diagram-title' },
      `Virtual pages V(f, 0) to V(f, ${k - 1}) map plane pages of their group leaders (groups of ${s.group}); all ${k} plane pages map one host frame.`
      + (d ? ` ${d.retargeted.length} mappings changed in the last regroup, drawn dashed and thick.` : '')));
    g.append(
      svg('text', { x: xV, y: 14, class: 'planes-col' }, 'V(f, j): guest-virtual'),
      svg('text', { x: xP, y: 14, class: 'planes-col' }, 'plane pages: guest-physical'),
      svg('text', { x: xF, y: 14, class: 'planes-col' }, 'host frame'),
    );
    const y = (j: number) => 24 + j * row;
    const fontSize = Math.min(12, row - 2);
    // host frame
    g.append(svg('rect', { x: xF, y: 24, width: wF, height: k * row - 2, rx: 4, class: 'planes-frame' }),
      svg('text', { x: xF + wF / 2, y: 24 + (k * row) / 2, 'text-anchor': 'middle', class: 'planes-label' }, hex(s.epts[0]!.hpa)));
    for (let j = 0; j < k; j++) {
      const r = s.ptes[j]!;
      const lead = r.plane;
      // plane page j -> frame
      g.append(svg('line', { x1: xP + wP, y1: y(j) + row / 2 - 1, x2: xF, y2: 24 + (k * row) / 2, class: 'planes-ept-line' }));
      // V(f, j) -> plane page of its leader
      const changed = retarget.has(j);
      g.append(svg('line', { x1: xV + wV, y1: y(j) + row / 2 - 1, x2: xP, y2: y(lead) + row / 2 - 1, class: changed ? 'planes-pte-line changed' : 'planes-pte-line' },
        svg('title', {}, `V(f, ${j}) -> plane ${lead}${changed && before ? ` (was plane ${before.ptes[j]!.plane})` : ''}`)));
      g.append(
        svg('rect', { x: xV, y: y(j), width: wV, height: row - 2, rx: 2, class: `planes-v${changed ? ' changed' : ''}${j === lead ? ' leader' : ''}` }),
        svg('rect', { x: xP, y: y(j), width: wP, height: row - 2, rx: 2, class: `planes-p${s.ptes.some((x) => x.plane === j) ? ' used' : ''}` }),
      );
      if (row >= 12) {
        g.append(
          svg('text', { x: xV + 4, y: y(j) + row - 5, class: 'planes-label', 'font-size': fontSize }, `V(f, ${j}) ${hex(r.gva)}`),
          svg('text', { x: xP + 4, y: y(j) + row - 5, class: 'planes-label', 'font-size': fontSize }, `plane ${j} ${hex(s.epts[j]!.gpa)}`),
        );
      }
    }
    diagram.replaceChildren(g,
      h('p', { class: 'planes-help' },
        'Solid boxes on the left are group leaders. Dashed, thick lines are the PTEs the last regroup pointed elsewhere. ',
        'Plane pages with no line into them are still mapped in the EPT, unused until the unit is made finer again.'));
  }

  function renderTable(s: PlanesSnapshot, d: PlanesDiff | null, before?: PlanesSnapshot) {
    const changedPte = new Set(d?.ptes ?? []);
    const changedEpt = new Set(d?.epts ?? []);
    const retarget = new Set(d?.retargeted ?? []);
    const head = h('thead', {},
      h('tr', {},
        h('th', { colspan: 4, scope: 'colgroup', text: 'Guest page table: V(f, j) and its PTE' }),
        h('th', { colspan: 3, scope: 'colgroup', text: 'EPT: plane page j and its entry' }),
        h('th', { rowspan: 2, scope: 'col', text: 'Slot j\'s bytes' })),
      h('tr', {},
        ...['j', 'V(f, j)', 'PTE value and bits', 'maps GPA (plane)'].map((t) => h('th', { scope: 'col', text: t })),
        ...['plane page GPA', 'EPT entry and bits', 'maps HPA'].map((t) => h('th', { scope: 'col', text: t }))));
    const body = h('tbody');
    const mark = (on: boolean) => (on ? h('span', { class: 'planes-mark', 'aria-label': 'changed', text: '✱ ' }) : '');
    for (let j = 0; j < s.k; j++) {
      const r = s.ptes[j]!;
      const e = s.epts[j]!;
      const was = before?.ptes[j];
      // the bits set, named and explained as the Walk view does (both entries are leaves: level 1)
      const bitsOf = (table: 'guest' | 'ept', bits: string[]) =>
        h('span', { class: 'planes-bits' }, bits.map((b) => h('abbr', { title: bitMeaning(table, 1, b), text: b })));
      const pteCell = h('td', { class: changedPte.has(j) ? 'changed' : undefined, title: was && changedPte.has(j) ? `was ${hex16(was.value)}` : undefined },
        mark(changedPte.has(j)), h('code', { text: hex16(r.value) }), h('br'), bitsOf('guest', guestBits(r.value, 1)),
        was && changedPte.has(j) ? h('span', { class: 'planes-was', text: ` was ${hex16(was.value)}` }) : '');
      const targetCell = h('td', { class: retarget.has(j) ? 'changed' : undefined },
        mark(retarget.has(j)), h('code', { text: hex(r.target) }), ` (plane ${r.plane})`,
        was && retarget.has(j) ? h('span', { class: 'planes-was', text: ` was plane ${was.plane}` }) : '');
      const eptCell = h('td', { class: changedEpt.has(j) ? 'changed' : undefined },
        mark(changedEpt.has(j)), h('code', { text: hex16(e.value) }), h('br'), bitsOf('ept', eptBits(e.value, 1)));
      body.append(h('tr', { class: r.leader === j ? 'leader' : undefined },
        h('th', { scope: 'row', text: String(j) }),
        h('td', {}, h('code', { text: hex(r.gva) })),
        pteCell, targetCell,
        h('td', {}, h('code', { text: hex(e.gpa) })),
        eptCell,
        h('td', {}, h('code', { text: hex(e.hpa) })),
        h('td', {}, h('code', { class: 'planes-bytes', text: bytesText(s.bytes.subarray(j * s.cls, (j + 1) * s.cls)) }))));
    }
    table.replaceChildren(
      h('caption', {}, `Frame ${s.frame}, unit ${s.unit} B. `, d ? `✱ marks what the last regroup changed.` : 'Change the unit size to see what a regroup changes.'),
      head, body);
  }

  await rebuild();
};
