// Counter names in slot order, derived from the CNT_* constants so they cannot drift.
import * as C from './consts.ts';

const camel = (s: string) => s.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

export const counterNames: string[] = (() => {
  const names: string[] = [];
  for (const [k, v] of Object.entries(C)) {
    if (k.startsWith('CNT_') && k !== 'CNT_COUNT' && typeof v === 'number') names[v] = camel(k.slice(4));
  }
  return names;
})();

export type Counters = Record<string, number>;
