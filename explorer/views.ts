// The explorer's views, in tab order. Adding a view is one entry here (main.ts makes its tab and
// section when index.html has none for it); switching a placeholder to the real view is one import
// and one `mount:` change, e.g.
//   import { mountWalk } from './walk.ts';
//   { id: 'walk', title: 'Walk', mount: mountWalk },
// A view's CSS is imported by the view's own module (import './walk.css'): esbuild gathers every
// imported stylesheet into explorer.css.
import type { Mount } from './context.ts';
import { mountWalk } from './walk.ts';
import { mountPractice } from './practice.ts';

export interface View {
  /** the URL hash that selects it (#walk) and the suffix of its tab and section ids */
  id: string;
  /** the tab's label */
  title: string;
  mount: Mount;
}

/** Stands in for a view that is not written yet. */
function placeholder(what: string): Mount {
  return (root) => {
    const p = document.createElement('p');
    p.className = 'placeholder';
    p.textContent = `${what}: coming soon.`;
    root.append(p);
  };
}

export const VIEWS: View[] = [
  { id: 'walk', title: 'Walk', mount: mountWalk },
  { id: 'practice', title: 'Practice', mount: mountPractice },
  { id: 'granularity', title: 'Granularity', mount: placeholder('Monitoring granularity: a trace swept over unit sizes') },
  { id: 'planes', title: 'Alias planes', mount: placeholder('Alias planes: one page seen through several mappings') },
];
