// Durability helpers shared by the writers of traces and checkpoints.
import * as fs from 'node:fs';

/** Makes a rename durable; not every platform lets a directory be opened, so failure is ignored. */
export function syncDir(dir: string): void {
  let fd = -1;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch { /* best effort */ } finally {
    if (fd >= 0) try { fs.closeSync(fd); } catch { /* ignore */ }
  }
}

const unfinished = new Set<{ abort(): void }>();
let exitHooked = false;

/**
 * Aborts `w` (removing its temp file) if the process exits before `finished(w)`: process.exit,
 * an uncaught exception, or Ctrl-C through the CLI's handler. A kill -9 runs no hook.
 */
export function abortOnExit(w: { abort(): void }): void {
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', () => { for (const x of unfinished) x.abort(); });
  }
  unfinished.add(w);
}

export function finished(w: { abort(): void }): void { unfinished.delete(w); }
