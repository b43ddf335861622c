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
