// The explorer's Practice view: a random translation problem from a seed (shown, and typed in to
// reproduce one), the tables it needs, and the learner's prediction checked against the
// simulator's own explainWalk; Reveal shows the walk step by step (the Walk view's renderer).
//
// data-testid (read by the end-to-end test):
//   practice-new      "New problem" (a random seed)
//   practice-seed     the seed input: its value is the current problem's seed; Enter or
//                     practice-seed-load builds the problem for the typed seed
//   practice-question the access asked about (data-gva, data-kind, data-user)
//   practice-answer   the answer input: an HPA (0x...), "#PF 0x7", "EPT violation 0x18a",
//                     "EPT misconfiguration" (Enter checks)
//   practice-check    "Check"
//   practice-verdict  right/wrong, specifically (data-verdict = right | wrong | partial | unreadable)
//   practice-reveal   "Reveal": the solution (practice-solution: data-kind, data-code, data-hpa
//                     and data-answer, the expected answer as practice-answer reads it)
import './practice.css';
import type { ExplorerContext, Mount } from './context.ts';
import {
  generateProblem, solveProblem, checkAnswer, canonicalAnswer, parseSeed, randomSeed, guestPath, problemText, ANSWER_HINT, type Solved,
} from './practice-model.ts';
import { faultLabel, outcomeHpa } from './walk-model.ts';
import { hex, hex16 } from '../src/walkfmt.ts';
import { h } from './dom.ts';
import { uid, chips, renderSteps, renderOutcomeDetail, renderSpaceSummary } from './walk.ts';

export const mountPractice: Mount = async (root: HTMLElement, ctx: ExplorerContext) => {
  root.classList.add('gx-practice');
  let solved: Solved | null = null;
  let generation = 0;

  // --- controls ---------------------------------------------------------------------------------
  const seedId = uid('gx-seed'), seedErrId = uid('gx-seed-err');
  const seedInput = h('input', { id: seedId, type: 'text', inputmode: 'numeric', class: 'gx-mono', size: 12, spellcheck: 'false', 'data-testid': 'practice-seed', 'aria-describedby': seedErrId });
  const seedError = h('p', { id: seedErrId, class: 'gx-field-error', role: 'alert' });
  const newButton = h('button', { type: 'button', class: 'gx-primary', 'data-testid': 'practice-new', onclick: () => { void show(randomSeed()); } }, 'New problem');
  const seedForm = h('form', {
    class: 'gx-controls', 'aria-label': 'Choose a problem',
    onsubmit: (ev: Event) => {
      ev.preventDefault();
      try {
        const s = parseSeed(seedInput.value);
        seedError.textContent = '';
        seedInput.removeAttribute('aria-invalid');
        void show(s);
      } catch (e) {
        seedError.textContent = (e as Error).message;
        seedInput.setAttribute('aria-invalid', 'true');
      }
    },
  },
  h('div', { class: 'gx-buttons' }, newButton),
  h('div', { class: 'gx-field' }, h('label', { for: seedId }, 'Seed (the same seed gives the same problem)'), seedInput),
  h('div', { class: 'gx-buttons' }, h('button', { type: 'submit', 'data-testid': 'practice-seed-load' }, 'Load this seed')),
  seedError);

  // --- the problem ------------------------------------------------------------------------------
  const problemHead = uid('gx-problem');
  const question = h('p', { class: 'gx-question', 'data-testid': 'practice-question' });
  const problemBody = h('div', {});
  const problem = h('section', { 'aria-labelledby': problemHead, class: 'gx-problem' }, h('h3', { id: problemHead }, 'The problem'), question, problemBody);

  // --- the answer -------------------------------------------------------------------------------
  const ansId = uid('gx-answer'), hintId = uid('gx-hint');
  const answer = h('input', { id: ansId, type: 'text', class: 'gx-mono', size: 32, spellcheck: 'false', autocomplete: 'off', 'data-testid': 'practice-answer', 'aria-describedby': hintId });
  const verdict = h('p', { class: 'gx-verdict', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true', 'data-testid': 'practice-verdict' });
  const checkButton = h('button', { type: 'submit', class: 'gx-primary', 'data-testid': 'practice-check' }, 'Check');
  const revealButton = h('button', { type: 'button', 'data-testid': 'practice-reveal', 'aria-expanded': 'false', onclick: () => reveal() }, 'Reveal');
  const answerForm = h('form', { class: 'gx-controls gx-answer', 'aria-label': 'Your answer', onsubmit: (ev: Event) => { ev.preventDefault(); check(); } },
    h('div', { class: 'gx-field gx-grow' }, h('label', { for: ansId }, 'What happens? Your answer'), answer,
      h('p', { id: hintId, class: 'gx-help' }, `Write ${ANSWER_HINT}.`)),
    h('div', { class: 'gx-buttons' }, checkButton, revealButton));

  const solutionHead = uid('gx-solution');
  const solution = h('section', { 'aria-label': 'Solution', class: 'gx-solution', 'data-testid': 'practice-solution', hidden: true });
  revealButton.setAttribute('aria-controls', solution.id = uid('gx-solution-box'));

  root.append(
    h('h2', {}, 'Practice: predict the walk'),
    h('p', { class: 'gx-intro' }, 'A small random address space and one access. Work out what the CPU does: the HPA the access reaches, or the fault it raises (with its error code or exit qualification). The simulator checks your answer.'),
    seedForm, problem, answerForm, verdict, solution,
  );

  // --- behaviour --------------------------------------------------------------------------------
  async function show(seed: number) {
    const mine = ++generation;
    seedInput.value = String(seed);
    const p = generateProblem(seed);
    let s: Solved;
    try {
      s = await solveProblem(p, { wasm: ctx.wasm });
    } catch (e) {
      const msg = `The problem for seed ${seed} could not be built (a bug in the generator): ${(e as Error).message}`;
      ctx.report(msg);
      if (mine === generation) { question.textContent = msg; problemBody.replaceChildren(); }
      return;
    }
    if (mine !== generation) return; // a newer problem was asked for meanwhile
    solved = s;
    question.dataset.seed = String(seed);
    question.dataset.gva = hex(p.gva);
    question.dataset.kind = p.kind;
    question.dataset.user = String(p.user);
    question.replaceChildren('Seed ', h('strong', {}, String(seed)), ': a ', h('strong', {}, problemText(p)),
      '. Does it reach memory, and at which HPA? Or which fault does it raise?');
    const path = guestPath(s.space, p.gva);
    const ix = s.report.indices;
    problemBody.replaceChildren(
      h('p', {}, `GVA ${hex(p.gva)}: PML4 index ${ix.pml4}, PDPT index ${ix.pdpt}, PD index ${ix.pd}, PT index ${ix.pt}, page offset ${ix.offset}.`),
      ...renderSpaceSummary(s.space, { headingLevel: 4 }),
      h('h4', {}, `The guest entries on the way of GVA ${hex(p.gva)}`),
      path.length === 0 ? h('p', { class: 'gx-muted' }, 'The guest PML4 table cannot be read (its GPA has no EPT mapping).') : h('div', { class: 'gx-scroll' }, h('table', {},
        h('caption', { class: 'gx-sr-only' }, 'Guest entries on the way, as stored in memory'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Entry'), h('th', { scope: 'col' }, 'At'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Bits set'))),
        h('tbody', {}, path.map((e) => h('tr', {},
          h('th', { scope: 'row' }, e.name), h('td', {}, h('code', {}, `GPA ${hex(e.gpa)}`)), h('td', {}, h('code', {}, hex16(e.value))),
          h('td', {}, chips('guest', e.level, e.bits, 'none (not present)'))))))),
      h('p', { class: 'gx-help' }, 'These are the entries as stored (read directly, without the EPT\'s say on reading them). Bits 51:12 of an entry hold the next table\'s GPA, or the page\'s. '
        + 'Remember the EPT: each guest table\'s GPA, and the final GPA, must translate, with R (and W for EPT A/D or a write, X for a fetch).'),
    );
    answer.value = '';
    answer.removeAttribute('aria-invalid');
    verdict.textContent = '';
    delete verdict.dataset.verdict;
    solution.hidden = true;
    solution.replaceChildren();
    revealButton.setAttribute('aria-expanded', 'false');
  }

  function check() {
    if (!solved) return;
    const v = checkAnswer(answer.value, solved.report);
    verdict.dataset.verdict = v.verdict;
    verdict.replaceChildren(h('strong', {}, v.verdict === 'right' ? '✓ ' : v.verdict === 'partial' ? '… ' : '✗ '), v.message);
    if (v.verdict === 'unreadable') answer.setAttribute('aria-invalid', 'true'); else answer.removeAttribute('aria-invalid');
  }

  function reveal() {
    if (!solved) return;
    const r = solved.report;
    const o = r.outcome;
    const label = faultLabel(o);
    solution.dataset.kind = label.kind;
    solution.dataset.code = label.code;
    solution.dataset.hpa = outcomeHpa(o);
    solution.dataset.answer = canonicalAnswer(o);
    solution.replaceChildren(
      h('h3', { id: solutionHead }, 'Solution'),
      h('p', { class: 'gx-summary' }, 'Answer: ', h('code', {}, canonicalAnswer(o)), '. ', o.summary),
      ...renderOutcomeDetail(o),
      solved.problem.recipe.length ? h('p', { class: 'gx-muted' }, `How this problem was made: ${solved.problem.recipe.join('; ')}.`) : '',
      h('h4', {}, 'The walk, step by step'),
      ...renderSteps(r, { headingLevel: 5 }),
    );
    solution.hidden = false;
    revealButton.setAttribute('aria-expanded', 'true');
    solution.querySelector('h3')?.setAttribute('tabindex', '-1');
    (solution.querySelector('h3') as HTMLElement | null)?.focus();
  }

  await show(randomSeed());
};
