// What machine a measurement came from, for reports and benchmarks.
import os from 'node:os';
import { readFileSync } from 'node:fs';

/** The CPU's model name (Linux: /proc/cpuinfo, which names it even in VMs; else Node's view). */
export function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch { /* not Linux */ }
  return os.cpus()[0]?.model ?? 'unknown';
}
