// Checksums and decompression for the trace reader and writer, on Node's zlib. The explorer's
// browser build swaps in codec.browser.ts (scripts/build-explorer.mjs).
import * as zlib from 'node:zlib';

/** CRC-32 (IEEE 802.3), continuing from `initial`. */
export function crc32(data: Uint8Array, initial = 0): number {
  return zlib.crc32(data, initial) >>> 0;
}

/** Raw DEFLATE, at most `rawLen` bytes out. */
export function inflateRaw(stored: Uint8Array, rawLen: number): Uint8Array {
  return zlib.inflateRawSync(stored, { maxOutputLength: rawLen });
}

/** Brotli, at most `rawLen` bytes out. */
export function brotliDecompress(stored: Uint8Array, rawLen: number): Uint8Array {
  return zlib.brotliDecompressSync(stored, { maxOutputLength: rawLen });
}
