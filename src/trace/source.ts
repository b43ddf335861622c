// Where a trace's bytes come from: a file (here) or memory (BytesSource). The explorer's browser
// build swaps in source.browser.ts, which has no files.
import * as fs from 'node:fs';

export { BytesSource, type ByteSource } from './bytes-source.ts';
import type { ByteSource } from './bytes-source.ts';

export function openFileSource(file: string): ByteSource {
  const fd = fs.openSync(file, 'r');
  let size: number;
  try {
    size = fs.fstatSync(fd).size;
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  let open = true;
  return {
    size,
    read(buf, len, pos) {
      let got = 0;
      while (got < len) {
        const n = fs.readSync(fd, buf, got, len - got, pos + got);
        if (n === 0) break;
        got += n;
      }
      return got;
    },
    close() {
      if (open) fs.closeSync(fd);
      open = false;
    },
  };
}
