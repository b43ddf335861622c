// A seeded generator for randomized tests and the benchmarks as a plain function (src/rng.ts).
import { Rng } from '../../src/rng.ts';

export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.float();
}
