// Step records of the inspection walk: every entry the walk reads, in order, for tools.
import { STEP_SIZE, STEP_MAX, STEP_KIND, STEP_LEVEL, STEP_FOR, STEP_FLAGS, STEP_ADDR, STEP_HPA, STEP_VALUE, STEP_INPUT } from './consts';
import { stepBase } from './state';

export let stepCount: u32 = 0;
export function resetSteps(): void { stepCount = 0; }

export function step(kind: i32, level: u32, forLevel: u32, flags: i32, addr: u64, hpa: u64, value: u64, input: u64): void {
  if (stepCount >= <u32>STEP_MAX) return;
  const p = stepBase + <usize>stepCount * <usize>STEP_SIZE;
  store<u32>(p + STEP_KIND, kind);
  store<u32>(p + STEP_LEVEL, level);
  store<u32>(p + STEP_FOR, forLevel);
  store<u32>(p + STEP_FLAGS, flags);
  store<u64>(p + STEP_ADDR, addr);
  store<u64>(p + STEP_HPA, hpa);
  store<u64>(p + STEP_VALUE, value);
  store<u64>(p + STEP_INPUT, input);
  stepCount++;
}

/** The guest step's flags are known only after its checks; patch the last step. */
export function patchLastFlags(flags: i32): void {
  if (stepCount == 0) return;
  store<u32>(stepBase + <usize>(stepCount - 1) * <usize>STEP_SIZE + STEP_FLAGS, flags);
}
