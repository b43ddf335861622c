// Readable, stable text for fault records and results (uvu cannot print bigints in diffs).

import type { FaultRecord } from '../../src/sim.ts';
import {
  ACC_KIND_MASK, ACC_USER, ACC_VALUE, FAULT_PF, FAULT_EPT_VIOLATION,
  PFEC_P, PFEC_WR, PFEC_US, PFEC_RSVD, PFEC_ID,
  EQ_READ, EQ_WRITE, EQ_FETCH, EQ_READABLE, EQ_WRITABLE, EQ_EXECUTABLE, EQ_GLA_VALID, EQ_GLA_XLATE, EQ_SPP,
} from '../../src/consts.ts';
import { faultName } from './ref-walker.ts';

export const hex = (v: bigint | number): string => '0x' + v.toString(16);

export function accName(acc: number): string {
  const k = ['R', 'W', 'X', '?'][acc & ACC_KIND_MASK];
  return `${acc & ACC_USER ? 'user' : 'sup'}-${k}${acc & ACC_VALUE ? '+value' : ''}`;
}

function flagNames(code: number, names: [number, string][]): string {
  const out = names.filter(([b]) => (code & b) !== 0).map(([, n]) => n);
  const known = names.reduce((a, [b]) => a | b, 0);
  if (code & ~known) out.push(hex(code & ~known));
  return out.join('|') || '0';
}

export function codeName(kind: number, code: number): string {
  if (kind === FAULT_PF) {
    return flagNames(code, [[PFEC_P, 'P'], [PFEC_WR, 'W/R'], [PFEC_US, 'U/S'], [PFEC_RSVD, 'RSVD'], [PFEC_ID, 'I/D']]);
  }
  if (kind === FAULT_EPT_VIOLATION) {
    return flagNames(code, [[EQ_READ, 'rd'], [EQ_WRITE, 'wr'], [EQ_FETCH, 'fetch'], [EQ_READABLE, 'R'],
      [EQ_WRITABLE, 'W'], [EQ_EXECUTABLE, 'X'], [EQ_GLA_VALID, 'gla'], [EQ_GLA_XLATE, 'xlate'], [EQ_SPP, 'spp']]);
  }
  return hex(code);
}

export type FaultLike = Omit<FaultRecord, 'index'>;

export function fmtFault(f: FaultLike | null | undefined): string {
  if (f === null || f === undefined) return 'none';
  return `${faultName(f.kind)} gva=${hex(f.gva)} gpa=${hex(f.gpa)} access=${accName(f.access)} level=${f.level}`
    + ` code=${hex(f.code)}(${codeName(f.kind, f.code)}) exitReason=${f.exitReason} guestLevel=${f.guestLevel}`;
}

export function fmtResult(r: { fault: FaultLike | null; hpa: bigint }): string {
  return r.fault ? `fault ${fmtFault(r.fault)} hpa=${hex(r.hpa)}` : `ok hpa=${hex(r.hpa)}`;
}
