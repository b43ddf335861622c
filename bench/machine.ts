// The machine a benchmark ran on, printed with every result: these are noisy 2-core VMs, and a
// figure means little without the CPU, the Node version and the checkout it came from.
import { execFileSync } from 'node:child_process';
import { cpuModel } from '../src/host.ts';
import os from 'node:os';

export function machineInfo(root: string, watch: string[] = []) {
  const cpu = cpuModel();
  let git: string | null = null;
  try {
    git = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (watch.length) {
      const dirty = execFileSync('git', ['status', '--porcelain', '--', ...watch], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      if (dirty) git += ` (${watch.join(', ')} modified)`;
    }
  } catch { /* not a checkout */ }
  return {
    cpu,
    cores: typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length,
    node: process.version,
    v8: process.versions.v8,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    kernel: os.version(),
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    git,
  };
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
