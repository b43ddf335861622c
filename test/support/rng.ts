// src/rng.ts's Rng as a plain function, for randomized tests written around `r()`: each call is
// the next float in [0, 1), and r.bytes(n) takes n random bytes from the same stream.
import { Rng } from '../../src/rng.ts';

export type SeededRandom = (() => number) & { bytes(n: number): Uint8Array };

export function rng(seed: number): SeededRandom {
  const r = new Rng(seed);
  return Object.assign(() => r.float(), { bytes: (n: number) => r.bytes(n) });
}
