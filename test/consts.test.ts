// The constants table is the single source for AssemblyScript, TypeScript and C: the generated
// files must match it, and the values that the SDM fixes must be the SDM's.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import * as C from '../src/consts.ts';

test('generated constant files match scripts/constants.mjs', () => {
  try {
    execFileSync(process.execPath, ['scripts/gen-constants.mjs', '--check'], { stdio: 'pipe' });
  } catch (e) {
    assert.unreachable(String((e as { stderr?: Buffer }).stderr ?? e));
  }
});

test('SDM-fixed values', () => {
  // Vol. 3A 4.5: A is bit 5, D bit 6, PS bit 7, XD bit 63.
  assert.is(C.PTE_A, 1n << 5n);
  assert.is(C.PTE_D, 1n << 6n);
  assert.is(C.PTE_PS, 1n << 7n);
  assert.is(C.PTE_XD, 1n << 63n);
  // Vol. 3C 29.3.5: EPT A is bit 8, D bit 9; EPTP bit 6 enables them; SPP is bit 61.
  assert.is(C.EPT_A, 1n << 8n);
  assert.is(C.EPT_D, 1n << 9n);
  assert.is(C.EPTP_AD, 1n << 6n);
  assert.is(C.EPT_SPP, 1n << 61n);
  // Vol. 3D Appendix C: basic exit reasons.
  assert.is(C.EXIT_EPT_VIOLATION, 48);
  assert.is(C.EXIT_EPT_MISCONFIG, 49);
  assert.is(C.EXIT_PML_FULL, 62);
  // Table 28-7: GLA valid is bit 7, translation-of-GLA bit 8.
  assert.is(C.EQ_GLA_VALID, 1 << 7);
  assert.is(C.EQ_GLA_XLATE, 1 << 8);
});

test.run();
