// Layout of a granule checkpoint directory (docs/checkpoint-format.md is the byte-exact
// description; keep the two in step): constants and record encoders shared by the writer and the
// restorer, the manifest's text form and its checks, and the error type both sides throw.
import { createHash } from 'node:crypto';
import { crc32 } from '../trace/format.ts';

/** First eight bytes of every epoch file: `\x89 G C K P \r \n \x1a` (the PNG signature's tricks, as in traces). */
export const MAGIC = Uint8Array.of(0x89, 0x47, 0x43, 0x4b, 0x50, 0x0d, 0x0a, 0x1a);
export const VERSION_MAJOR = 1;
export const VERSION_MINOR = 0;

export const KIND_BASE = 0x42; // 'B'
export const KIND_INCREMENT = 0x49; // 'I'

export const FRAME_BYTES = 4096;
/** Frame numbers stay below 2^41 so that frame * 4096 is an exact integer address. */
export const FRAME_LIMIT = 2 ** 41;

/** magic(8) major(u16) minor(u16) kind(u8) reserved(3) chainId(16) epoch(u64) prevSha256(32) crc(u32) */
export const FILE_HEADER_BYTES = 76;
export const CHAIN_ID_BYTES = 16;
export const DIGEST_BYTES = 32;

export const REC_BLOCK = 0x55; // 'U'
export const REC_END = 0x45; // 'E'
/** type(u8) codec(u8) reserved(u16) units(u32) rawLength(u32) storedLength(u32) payloadCrc(u32) headerCrc(u32) */
export const BLOCK_HEADER_BYTES = 24;
/** type(u8) reserved(3) blocks(u32) units(u64) dataBytes(u64) crc(u32) */
export const END_RECORD_BYTES = 28;

export const CODEC_NONE = 0;
export const CODEC_DEFLATE = 1;

/** The writer ends a block once its payload reaches this. */
export const BLOCK_FLUSH_BYTES = 1 << 20;
/** A unit record is at most 3 varints (8 bytes each) + 4096 bytes; a block never exceeds flush + one record. */
export const MAX_BLOCK_RAW = BLOCK_FLUSH_BYTES + 3 * 8 + FRAME_BYTES;
/** A reader refuses larger stored payloads before allocating (the writer stores a block raw when deflate does not shrink it). */
export const MAX_BLOCK_STORED = MAX_BLOCK_RAW;
/** Smallest unit record: three one-byte varints and one data byte. */
export const MIN_RECORD_BYTES = 4;

export const MANIFEST = 'manifest.json';
export const FORMAT_NAME = 'granule-checkpoint';

/** The file name of epoch `e`: fixed, so a renamed file is caught by the epoch in its header. */
export function epochFileName(epoch: number): string {
  return `epoch-${String(epoch).padStart(6, '0')}.gck`;
}
export const EPOCH_FILE_RE = /^epoch-(\d{6,})\.gck$/;

export class CheckpointError extends Error {
  readonly offset?: number;
  constructor(
    readonly file: string,
    where: { offset?: number },
    readonly problem: string,
    readonly advice = '',
  ) {
    const at = where.offset !== undefined ? `: offset ${where.offset}` : '';
    super(`${file}${at}: ${problem}${advice ? `. ${advice}` : ''}`);
    this.name = 'CheckpointError';
    if (where.offset !== undefined) this.offset = where.offset;
  }
}

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

export function hex(v: number): string {
  return '0x' + v.toString(16);
}

/** The fixed file header; `prev` is the SHA-256 of the previous epoch's file (zeros for the base). */
export function encodeFileHeader(kind: number, chainId: Uint8Array, epoch: number, prev: Uint8Array): Buffer {
  const h = Buffer.alloc(FILE_HEADER_BYTES);
  h.set(MAGIC, 0);
  h.writeUInt16LE(VERSION_MAJOR, 8);
  h.writeUInt16LE(VERSION_MINOR, 10);
  h[12] = kind;
  h.set(chainId, 16);
  h.writeUInt32LE(epoch % 0x100000000, 32);
  h.writeUInt32LE(Math.floor(epoch / 0x100000000), 36);
  h.set(prev, 40);
  h.writeUInt32LE(crc32(h.subarray(0, FILE_HEADER_BYTES - 4)), FILE_HEADER_BYTES - 4);
  return h;
}

export function encodeBlockHeader(codec: number, units: number, rawLength: number, stored: Uint8Array): Buffer {
  const h = Buffer.alloc(BLOCK_HEADER_BYTES);
  h[0] = REC_BLOCK;
  h[1] = codec;
  h.writeUInt32LE(units, 4);
  h.writeUInt32LE(rawLength, 8);
  h.writeUInt32LE(stored.length, 12);
  h.writeUInt32LE(crc32(stored), 16);
  h.writeUInt32LE(crc32(h.subarray(0, 20)), 20);
  return h;
}

export function encodeEndRecord(blocks: number, units: number, dataBytes: number): Buffer {
  const e = Buffer.alloc(END_RECORD_BYTES);
  e[0] = REC_END;
  e.writeUInt32LE(blocks, 4);
  e.writeUInt32LE(units % 0x100000000, 8);
  e.writeUInt32LE(Math.floor(units / 0x100000000), 12);
  e.writeUInt32LE(dataBytes % 0x100000000, 16);
  e.writeUInt32LE(Math.floor(dataBytes / 0x100000000), 20);
  e.writeUInt32LE(crc32(e.subarray(0, 24)), 24);
  return e;
}

// ---- manifest ----

export interface ManifestEpoch {
  epoch: number;
  kind: 'base' | 'increment';
  file: string;
  /** Size of the file. */
  bytes: number;
  units: number;
  /** Sum of the units' lengths: the memory bytes this epoch saved. */
  dataBytes: number;
  sha256: string;
}

export interface Manifest {
  format: typeof FORMAT_NAME;
  version: string;
  chainId: string;
  /** True once the writer's close() ran: a false one means the run stopped early (its epochs are still good). */
  closed: boolean;
  meta: Record<string, unknown>;
  epochs: ManifestEpoch[];
}

/**
 * The manifest is pretty JSON whose last key is `manifestSha256`, the SHA-256 of every byte before
 * the `,` that precedes it. The file stays plain JSON for people and jq, and every byte of it is
 * checked, including whitespace (a re-serialised digest would miss damage there).
 */
export function encodeManifest(m: Manifest): Buffer {
  const lines = [
    '{',
    `  "format": ${JSON.stringify(m.format)},`,
    `  "version": ${JSON.stringify(m.version)},`,
    `  "chainId": ${JSON.stringify(m.chainId)},`,
    `  "closed": ${m.closed},`,
    `  "meta": ${JSON.stringify(m.meta)},`,
    // One line per epoch keeps the manifest small and diffable; it is rewritten after every epoch.
    m.epochs.length === 0 ? '  "epochs": []' : `  "epochs": [\n${m.epochs.map((e) => '    ' + JSON.stringify(e)).join(',\n')}\n  ]`,
  ];
  const body = Buffer.from(lines.join('\n'), 'utf8');
  return Buffer.concat([body, Buffer.from(`,\n  "manifestSha256": "${sha256(body).toString('hex')}"\n}\n`, 'utf8')]);
}

const MANIFEST_TAIL_RE = /,\n {2}"manifestSha256": "([0-9a-f]{64})"\n\}\n$/;
const CORRUPT = 'the manifest is damaged or was edited by hand; restore the checkpoint directory from a copy';

/** Checks the manifest's bytes (digest, JSON, every field) and returns it; `file` names it in errors. */
export function parseManifest(file: string, bytes: Buffer): Manifest {
  if (bytes.length === 0) throw new CheckpointError(file, { offset: 0 }, 'the manifest is empty', CORRUPT);
  const tailStart = Math.max(0, bytes.length - 100);
  const tail = bytes.subarray(tailStart).toString('latin1');
  const m = MANIFEST_TAIL_RE.exec(tail);
  if (!m) {
    throw new CheckpointError(file, { offset: bytes.length }, 'the manifest does not end with its "manifestSha256" line (cut short or edited)', CORRUPT);
  }
  const bodyEnd = tailStart + m.index;
  const computed = sha256(bytes.subarray(0, bodyEnd)).toString('hex');
  if (computed !== m[1]) {
    throw new CheckpointError(file, { offset: 0 }, `manifest checksum mismatch (manifestSha256 ${m[1]!.slice(0, 16)}..., computed ${computed.slice(0, 16)}... over bytes 0..${bodyEnd - 1})`, CORRUPT);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new CheckpointError(file, { offset: 0 }, `the manifest is not valid JSON (${(e as Error).message})`, WRITER_BUG);
  }
  const bad = (what: string) => new CheckpointError(file, {}, what, WRITER_BUG);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('the manifest is not a JSON object');
  const o = raw as Record<string, unknown>;
  if (o.format !== FORMAT_NAME) throw bad(`format is ${JSON.stringify(o.format)}, not "${FORMAT_NAME}": this is not a granule checkpoint manifest`);
  const v = typeof o.version === 'string' ? /^(\d+)\.(\d+)$/.exec(o.version) : null;
  if (!v) throw bad(`version ${JSON.stringify(o.version)} is not "major.minor"`);
  const major = Number(v[1]);
  if (major > VERSION_MAJOR) {
    throw new CheckpointError(file, {}, `written by a newer granule (checkpoint format version ${o.version}; this granule reads version ${VERSION_MAJOR})`, 'upgrade granule');
  }
  if (major < 1) throw new CheckpointError(file, {}, `unknown checkpoint format version ${o.version}`, 'the checkpoint comes from a pre-release granule; write it again');
  if (typeof o.chainId !== 'string' || !/^[0-9a-f]{32}$/.test(o.chainId)) throw bad('chainId must be 32 lower-case hex digits');
  if (typeof o.closed !== 'boolean') throw bad('closed must be true or false');
  const metaErr = metaProblem(o.meta);
  if (metaErr) throw bad(metaErr);
  if (!Array.isArray(o.epochs)) throw bad('epochs must be an array');
  o.epochs.forEach((e: unknown, i: number) => {
    const p = epochEntryProblem(e, i);
    if (p) throw bad(`epochs[${i}]: ${p}`);
  });
  return o as unknown as Manifest;
}

const WRITER_BUG = 'the manifest passed its checksum, so granule wrote it this way: please report it with the directory';

function epochEntryProblem(e: unknown, i: number): string | undefined {
  if (e === null || typeof e !== 'object' || Array.isArray(e)) return 'not an object';
  const o = e as Record<string, unknown>;
  if (o.epoch !== i) return `epoch must be ${i} (epochs are listed in order from 0), got ${JSON.stringify(o.epoch)}`;
  if (o.kind !== (i === 0 ? 'base' : 'increment')) return `kind must be "${i === 0 ? 'base' : 'increment'}"`;
  if (o.file !== epochFileName(i)) return `file must be "${epochFileName(i)}", got ${JSON.stringify(o.file)}`;
  for (const k of ['bytes', 'units', 'dataBytes'] as const) {
    if (!(Number.isSafeInteger(o[k]) && (o[k] as number) >= 0)) return `${k} must be a non-negative integer`;
  }
  if (typeof o.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(o.sha256)) return 'sha256 must be 64 lower-case hex digits';
  return undefined;
}

/** What is wrong with checkpoint metadata, or undefined. The writer checks before writing, the restorer after reading. */
export function metaProblem(meta: unknown): string | undefined {
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) return 'meta must be a JSON object';
  const m = meta as Record<string, unknown>;
  const t = m.trace as Record<string, unknown> | undefined;
  if (t === null || typeof t !== 'object' || Array.isArray(t)) return 'meta.trace must be an object { path, bytes, sha256 }';
  if (typeof t.path !== 'string' || t.path === '') return 'meta.trace.path must be a non-empty string';
  if (!(Number.isSafeInteger(t.bytes) && (t.bytes as number) >= 0)) return 'meta.trace.bytes must be a non-negative integer';
  if (typeof t.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(t.sha256)) return 'meta.trace.sha256 must be 64 lower-case hex digits';
  if (typeof m.mode !== 'string' || m.mode === '') return 'meta.mode must be a non-empty string';
  if (typeof m.layout !== 'string' || m.layout === '') return 'meta.layout must be a non-empty string';
  if (!(m.granularity === 'adaptive' || (Number.isSafeInteger(m.granularity) && (m.granularity as number) > 0))) {
    return `meta.granularity must be a positive integer or "adaptive", got ${JSON.stringify(m.granularity)}`;
  }
  if (!(Number.isSafeInteger(m.epochWrites) && (m.epochWrites as number) >= 0)) return `meta.epochWrites must be a non-negative integer, got ${JSON.stringify(m.epochWrites)}`;
  if (m.created !== undefined && typeof m.created !== 'string') return 'meta.created must be a string';
  return undefined;
}
