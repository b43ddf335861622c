// The explorer's views, in tab order. Adding a view is one import and one entry here (main.ts
// makes its tab and section when index.html has none for it). A view's CSS is imported by the
// view's own module (import './walk.css'): esbuild gathers every imported stylesheet into
// explorer.css.
import type { Mount } from './context.ts';
import { mountWalk } from './walk.ts';
import { mountPractice } from './practice.ts';
import { mountGranularity } from './granularity.ts';
import { mountPlanes } from './planes.ts';

export interface View {
  /** the URL hash that selects it (#walk) and the suffix of its tab and section ids */
  id: string;
  /** the tab's label */
  title: string;
  mount: Mount;
}

export const VIEWS: View[] = [
  { id: 'walk', title: 'Walk', mount: mountWalk },
  { id: 'practice', title: 'Practice', mount: mountPractice },
  { id: 'granularity', title: 'Granularity', mount: mountGranularity },
  { id: 'planes', title: 'Alias planes', mount: mountPlanes },
];
