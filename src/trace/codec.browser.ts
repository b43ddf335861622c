// codec.ts for the browser (the explorer): fflate's inflate and a table CRC-32. Browsers offer no
// synchronous Brotli, so Brotli chunks are refused with what to do.
import { inflateSync } from 'fflate';

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(data: Uint8Array, initial = 0): number {
  let c = ~initial >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

export function inflateRaw(stored: Uint8Array, rawLen: number): Uint8Array {
  return inflateSync(stored, { out: new Uint8Array(rawLen) });
}

export function brotliDecompress(): Uint8Array {
  throw new Error('Brotli-compressed chunks cannot be read in the browser; write the trace with deflate chunks (granule\'s default) and load it again');
}
