// Restore and verification of a checkpoint directory. Every file is checked before its units are
// used: its structure and checksums first (so damage is named with an offset), then its place in the
// chain (chain id, epoch, the digest of the previous file), then its digest against the manifest.
// Nothing here writes to disk.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { crc32 } from '../trace/format.ts';
import {
  BLOCK_HEADER_BYTES, CHAIN_ID_BYTES, CODEC_DEFLATE, CODEC_NONE, CheckpointError, DIGEST_BYTES, END_RECORD_BYTES, EPOCH_FILE_RE,
  FILE_HEADER_BYTES, FRAME_BYTES, FRAME_LIMIT, KIND_BASE, KIND_INCREMENT, MAGIC, MANIFEST, MAX_BLOCK_RAW, MAX_BLOCK_STORED,
  MIN_RECORD_BYTES, REC_BLOCK, epochFileName, REC_END, VERSION_MAJOR, hex, parseManifest, sha256, type Manifest, type ManifestEpoch,
} from './format.ts';
import type { CheckpointMeta } from './writer.ts';

export { CheckpointError } from './format.ts';
export type { Manifest, ManifestEpoch } from './format.ts';

export interface RestoreResult {
  meta: CheckpointMeta;
  epoch: number;
  /** frame number -> its 4096 bytes at the end of `epoch`. */
  frames: Map<number, Uint8Array>;
  /** Paths read, the manifest first, then the epoch files in order. */
  filesRead: string[];
}

export interface ChainSummary {
  /** Epochs listed (base included): latest + 1. */
  epochs: number;
  latest: number;
  /** Total size of the epoch files. */
  bytes: number;
  /** False when the writer never ran close() (the run stopped early; the listed epochs are still good). */
  closed: boolean;
  /** Harmless findings: orphan files and temp files a stopped writer left, which restore ignores. */
  notes: string[];
}

const WRITER_BUG = 'the data passed its checksum, so granule wrote it this way: please report it with the directory';
const REPLACED = 'the checkpoint directory was altered (files renamed, replaced or copied in from another run); restore it from a copy';

/** What to do about a bad file of epoch `e`: epochs before it are still restorable. */
function advice(e: number) {
  const earlier = e > 0 ? `, or restore an earlier epoch with --epoch ${e - 1}` : '';
  return {
    CORRUPT: `the file is damaged; restore the checkpoint directory from a copy${earlier}`,
    CUT: `the file was cut short (copy interrupted or disk full); restore the checkpoint directory from a copy${earlier}`,
    REPLACED: `the checkpoint directory was altered (files renamed, replaced or copied in from another run); restore it from a copy${earlier}`,
  };
}

/** Reads and checks DIR/manifest.json. */
export function readManifest(dir: string): Manifest {
  const file = path.join(dir, MANIFEST);
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      let entries: string[] | null = null;
      try { entries = fs.readdirSync(dir); } catch { /* reported below */ }
      if (entries === null) throw new CheckpointError(dir, {}, 'no such checkpoint directory', 'give the directory `granule checkpoint -o` wrote');
      if (entries.some((n) => EPOCH_FILE_RE.test(n) || n.endsWith('.tmp'))) {
        throw new CheckpointError(file, {}, 'missing, but the directory holds checkpoint files: the manifest was deleted, or the writer was stopped before it wrote one', REPLACED);
      }
      throw new CheckpointError(file, {}, 'missing: this is not a granule checkpoint directory', 'give the directory `granule checkpoint -o` wrote');
    }
    throw new CheckpointError(file, {}, `cannot read the manifest: ${(e as Error).message}`);
  }
  return parseManifest(file, bytes);
}

/**
 * The memory image at the end of `epoch` (default: the latest the manifest lists): the base, then
 * each increment in order. Reads only the files up to `epoch`, so an earlier epoch can be restored
 * when a later file is damaged. Throws CheckpointError naming the first bad file.
 */
export function restoreImage(dir: string, epoch?: number): RestoreResult {
  const m = readManifest(dir);
  const manifestFile = path.join(dir, MANIFEST);
  const latest = m.epochs.length - 1;
  if (latest < 0) throw noEpochs(manifestFile);
  const target = epoch ?? latest;
  if (!Number.isSafeInteger(target) || target < 0) throw new RangeError(`${dir}: epoch must be a non-negative integer, got ${epoch}`);
  if (target > latest) {
    throw new CheckpointError(manifestFile, {}, `epoch ${target} is not in this checkpoint: the latest complete epoch is ${latest}${m.closed ? '' : ' (the run stopped before closing the checkpoint)'}`,
      `give an epoch from 0 to ${latest}`);
  }
  const frames = new Map<number, Uint8Array>();
  const filesRead = [manifestFile];
  let prev: Uint8Array = new Uint8Array(DIGEST_BYTES);
  for (let e = 0; e <= target; e++) {
    const file = path.join(dir, m.epochs[e]!.file);
    prev = checkEpochFile(file, m, m.epochs[e]!, prev, (frame, offset, data, start, len) => {
      let f = frames.get(frame);
      if (!f) { f = new Uint8Array(FRAME_BYTES); frames.set(frame, f); }
      f.set(data.subarray(start, start + len), offset);
    });
    filesRead.push(file);
  }
  return { meta: m.meta as CheckpointMeta, epoch: target, frames, filesRead };
}

/** Checks the manifest and every file it lists, and the links between them, without building the image. */
export function verifyChain(dir: string): ChainSummary {
  const m = readManifest(dir);
  const latest = m.epochs.length - 1;
  if (latest < 0) throw noEpochs(path.join(dir, MANIFEST));
  let prev: Uint8Array = new Uint8Array(DIGEST_BYTES);
  let bytes = 0;
  for (const entry of m.epochs) {
    prev = checkEpochFile(path.join(dir, entry.file), m, entry, prev);
    bytes += entry.bytes;
  }
  const notes: string[] = [];
  const listed = new Set(m.epochs.map((e) => e.file));
  for (const name of fs.readdirSync(dir).sort()) {
    if (name === MANIFEST || listed.has(name)) continue;
    const file = path.join(dir, name);
    if (EPOCH_FILE_RE.test(name)) notes.push(`${file}: not listed in the manifest (the writer stopped between writing it and updating the manifest); ignored, safe to delete`);
    else if (name.startsWith('.') && name.endsWith('.tmp')) notes.push(`${file}: temp file of a writer that was killed; ignored, safe to delete`);
    else notes.push(`${file}: not part of the checkpoint; ignored`);
  }
  if (!m.closed) notes.unshift(`${path.join(dir, MANIFEST)}: the run stopped before closing the checkpoint; epochs 0..${latest} are complete`);
  return { epochs: latest + 1, latest, bytes, closed: m.closed, notes };
}

function noEpochs(manifestFile: string): CheckpointError {
  return new CheckpointError(manifestFile, {}, 'the checkpoint has no complete epoch: the writer stopped before the base image was written', 'run granule checkpoint again');
}

type ApplyUnit = (frame: number, offset: number, data: Uint8Array, start: number, len: number) => void;

/** Checks one epoch file completely and returns its SHA-256 (the next file's link). */
function checkEpochFile(file: string, m: Manifest, entry: ManifestEpoch, prevDigest: Uint8Array, apply?: ApplyUnit): Buffer {
  const epoch = entry.epoch;
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CheckpointError(file, {}, `missing: the manifest lists it as epoch ${epoch} (${entry.bytes} bytes)`,
        epoch > 0 ? `the increment chain is broken; restore the directory from a copy, or restore an earlier epoch with --epoch ${epoch - 1}` : 'without the base nothing can be restored; restore the directory from a copy');
    }
    throw new CheckpointError(file, {}, `cannot read the file: ${(e as Error).message}`);
  }
  const size = buf.length;
  const { CORRUPT, CUT, REPLACED } = advice(epoch);
  const err = (offset: number, problem: string, advice: string) => new CheckpointError(file, { offset }, problem, advice);

  // ---- header ----
  if (size === 0) throw err(0, 'the file is empty', CUT);
  const magicLen = Math.min(size, MAGIC.length);
  for (let i = 0; i < magicLen; i++) {
    if (buf[i] !== MAGIC[i]) {
      throw err(i, `bad magic: this is not a granule checkpoint file (starts with ${[...buf.subarray(0, magicLen)].map((b) => b.toString(16).padStart(2, '0')).join(' ')})`, REPLACED);
    }
  }
  if (size < FILE_HEADER_BYTES) throw err(size, `file ends inside the header (${FILE_HEADER_BYTES} bytes needed, ${size} present)`, CUT);
  const headCrc = buf.readUInt32LE(FILE_HEADER_BYTES - 4);
  const headCrcNow = crc32(buf.subarray(0, FILE_HEADER_BYTES - 4));
  if (headCrc !== headCrcNow) throw err(FILE_HEADER_BYTES - 4, `header checksum mismatch (stored ${hex(headCrc)}, computed ${hex(headCrcNow)})`, CORRUPT);
  const major = buf.readUInt16LE(8);
  const minor = buf.readUInt16LE(10);
  if (major > VERSION_MAJOR) throw err(8, `written by a newer granule (checkpoint format version ${major}.${minor}; this granule reads version ${VERSION_MAJOR})`, 'upgrade granule');
  if (major < 1) throw err(8, `unknown checkpoint format version ${major}.${minor}`, 'the file comes from a pre-release granule; write the checkpoint again');
  const kind = buf[12]!;
  if (kind !== KIND_BASE && kind !== KIND_INCREMENT) throw err(12, `unknown file kind ${hex(kind)} (expected 0x42 base or 0x49 increment)`, WRITER_BUG);
  if (buf[13] !== 0 || buf[14] !== 0 || buf[15] !== 0) throw err(13, 'reserved header bytes are not zero', WRITER_BUG);
  const chain = buf.subarray(16, 16 + CHAIN_ID_BYTES).toString('hex');
  if (chain !== m.chainId) {
    throw err(16, `belongs to another checkpoint (chain id ${chain}; this directory's manifest has ${m.chainId})`, REPLACED);
  }
  const fileEpoch = buf.readUInt32LE(36) * 0x100000000 + buf.readUInt32LE(32);
  if (fileEpoch !== epoch) {
    throw err(32, `holds epoch ${fileEpoch}, but the manifest lists it as epoch ${epoch}: files were renamed or reordered`, REPLACED);
  }
  const wantKind = epoch === 0 ? KIND_BASE : KIND_INCREMENT;
  if (kind !== wantKind) throw err(12, `epoch ${epoch} must be ${epoch === 0 ? 'a base (0x42)' : 'an increment (0x49)'}, the file says ${hex(kind)}`, WRITER_BUG);
  const prevInFile = buf.subarray(40, 40 + DIGEST_BYTES);
  if (!prevInFile.equals(prevDigest)) {
    throw err(40, epoch === 0
      ? 'the base must have an all-zero previous-file digest'
      : `does not follow this directory's epoch ${epoch - 1} (its previous-file digest ${prevInFile.toString('hex').slice(0, 16)}... is not the SHA-256 of ${epochFileName(epoch - 1)}, ${Buffer.from(prevDigest).toString('hex').slice(0, 16)}...)`,
    REPLACED);
  }

  // ---- blocks and end record ----
  let off = FILE_HEADER_BYTES;
  let blocks = 0;
  let units = 0;
  let dataBytes = 0;
  for (;;) {
    if (off >= size) throw err(off, `file ends after block ${blocks - 1 < 0 ? '(none)' : blocks - 1} without an end record (${units} units read)`, CUT);
    const type = buf[off]!;
    if (type === REC_END) break;
    if (type !== REC_BLOCK) throw err(off, `unknown record type ${hex(type)} where block ${blocks} or the end record should start`, CORRUPT);
    if (size - off < BLOCK_HEADER_BYTES) throw err(size, `file ends inside the header of block ${blocks} (${BLOCK_HEADER_BYTES} bytes needed, ${size - off} present)`, CUT);
    const hCrc = buf.readUInt32LE(off + 20);
    const hCrcNow = crc32(buf.subarray(off, off + 20));
    if (hCrc !== hCrcNow) throw err(off, `checksum mismatch in the header of block ${blocks} (stored ${hex(hCrc)}, computed ${hex(hCrcNow)})`, CORRUPT);
    const codec = buf[off + 1]!;
    const count = buf.readUInt32LE(off + 4);
    const rawLen = buf.readUInt32LE(off + 8);
    const storedLen = buf.readUInt32LE(off + 12);
    const bad = (what: string) => err(off, `block ${blocks}: ${what}`, WRITER_BUG);
    if (codec !== CODEC_NONE && codec !== CODEC_DEFLATE) throw err(off + 1, `block ${blocks} uses codec ${codec}, which this granule does not know`, 'upgrade granule');
    if (buf[off + 2] !== 0 || buf[off + 3] !== 0) throw bad('reserved bytes are not zero');
    if (rawLen > MAX_BLOCK_RAW) throw bad(`payload length ${rawLen} is over the limit of ${MAX_BLOCK_RAW}`);
    if (storedLen > MAX_BLOCK_STORED) throw bad(`stored length ${storedLen} is over the limit of ${MAX_BLOCK_STORED}`);
    if (count < 1 || count * MIN_RECORD_BYTES > rawLen) throw bad(`unit count ${count} does not fit a ${rawLen}-byte payload`);
    if (codec === CODEC_NONE && storedLen !== rawLen) throw bad(`stored length ${storedLen} differs from payload length ${rawLen} without compression`);
    const payloadOff = off + BLOCK_HEADER_BYTES;
    if (size - payloadOff < storedLen) throw err(size, `file ends inside block ${blocks} (header at offset ${off} says ${storedLen} bytes, ${size - payloadOff} present)`, CUT);
    const stored = buf.subarray(payloadOff, payloadOff + storedLen);
    const pCrc = buf.readUInt32LE(off + 16);
    const pCrcNow = crc32(stored);
    if (pCrc !== pCrcNow) {
      throw err(payloadOff, `checksum mismatch in block ${blocks} (block at offset ${off}, ${storedLen}-byte payload; stored ${hex(pCrc)}, computed ${hex(pCrcNow)})`, CORRUPT);
    }
    let raw: Uint8Array = stored;
    if (codec === CODEC_DEFLATE) {
      try {
        raw = zlib.inflateRawSync(stored, { maxOutputLength: rawLen });
      } catch (e) {
        throw bad(`deflate data does not decompress to ${rawLen} bytes (${(e as Error).message})`);
      }
      if (raw.length !== rawLen) throw bad(`deflate data decompresses to ${raw.length} bytes, the header says ${rawLen}`);
    }
    const r = decodeUnits(raw, count, epoch === 0, apply);
    if (typeof r === 'string') throw err(codec === CODEC_NONE ? payloadOff : off, `block ${blocks}: ${r}`, WRITER_BUG);
    units += count;
    dataBytes += r;
    blocks++;
    off = payloadOff + storedLen;
  }
  if (size - off < END_RECORD_BYTES) throw err(size, `file ends inside the end record (${END_RECORD_BYTES} bytes needed, ${size - off} present)`, CUT);
  const eCrc = buf.readUInt32LE(off + 24);
  const eCrcNow = crc32(buf.subarray(off, off + 24));
  if (eCrc !== eCrcNow) throw err(off, `checksum mismatch in the end record (stored ${hex(eCrc)}, computed ${hex(eCrcNow)})`, CORRUPT);
  const endBlocks = buf.readUInt32LE(off + 4);
  const endUnits = buf.readUInt32LE(off + 12) * 0x100000000 + buf.readUInt32LE(off + 8);
  const endData = buf.readUInt32LE(off + 20) * 0x100000000 + buf.readUInt32LE(off + 16);
  if (buf[off + 1] !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) throw err(off, 'end record: reserved bytes are not zero', WRITER_BUG);
  if (endBlocks !== blocks || endUnits !== units || endData !== dataBytes) {
    throw err(off, `end record says ${endBlocks} blocks, ${endUnits} units, ${endData} data bytes; the file holds ${blocks}, ${units}, ${dataBytes}`, WRITER_BUG);
  }
  if (off + END_RECORD_BYTES !== size) throw err(off + END_RECORD_BYTES, `${size - off - END_RECORD_BYTES} bytes follow the end record`, CORRUPT);

  // ---- against the manifest ----
  const digest = sha256(buf);
  if (size !== entry.bytes || digest.toString('hex') !== entry.sha256) {
    throw new CheckpointError(file, {}, `is a complete checkpoint file of this run, but not the one the manifest lists as epoch ${epoch} (manifest: ${entry.bytes} bytes, sha-256 ${entry.sha256.slice(0, 16)}...; file: ${size} bytes, ${digest.toString('hex').slice(0, 16)}...)`, REPLACED);
  }
  if (units !== entry.units || dataBytes !== entry.dataBytes) {
    throw new CheckpointError(path.join(path.dirname(file), MANIFEST), {}, `epoch ${epoch}: lists ${entry.units} units and ${entry.dataBytes} data bytes, the file holds ${units} and ${dataBytes}`, WRITER_BUG);
  }
  return digest;
}

/**
 * Walks `count` unit records that must use up `raw` exactly; returns the data bytes, or what is
 * wrong (with the record's payload position).
 */
function decodeUnits(raw: Uint8Array, count: number, base: boolean, apply?: ApplyUnit): number | string {
  const end = raw.length;
  let p = 0;
  let data = 0;
  for (let i = 0; i < count; i++) {
    const at = p;
    let frame: number, offset: number, len: number;
    // Inline one-byte varints: offsets and lengths below 128 and small frame numbers are the common case.
    if (p < end && raw[p]! < 0x80) frame = raw[p++]!;
    else { const v = uvarint(raw, p, end); if (v < 0) return `unit ${i} (payload byte ${at}): bad frame varint`; frame = v; p = varintEnd; }
    if (p < end && raw[p]! < 0x80) offset = raw[p++]!;
    else { const v = uvarint(raw, p, end); if (v < 0) return `unit ${i} (payload byte ${at}): bad offset varint`; offset = v; p = varintEnd; }
    if (p < end && raw[p]! < 0x80) len = raw[p++]!;
    else { const v = uvarint(raw, p, end); if (v < 0) return `unit ${i} (payload byte ${at}): bad length varint`; len = v; p = varintEnd; }
    if (frame >= FRAME_LIMIT) return `unit ${i} (payload byte ${at}): frame ${frame} is 2^41 or more`;
    if (len < 1 || offset + len > FRAME_BYTES) return `unit ${i} (payload byte ${at}): frame ${frame}, offset ${offset} + length ${len} is not inside the frame`;
    if (base && (offset !== 0 || len !== FRAME_BYTES)) return `unit ${i} (payload byte ${at}): the base holds whole frames, got offset ${offset} length ${len}`;
    if (end - p < len) return `unit ${i} (payload byte ${at}): ${len} data bytes needed, ${end - p} left in the payload`;
    apply?.(frame, offset, raw, p, len);
    p += len;
    data += len;
  }
  if (p !== end) return `${end - p} bytes follow the last of the ${count} units in the payload`;
  return data;
}

let varintEnd = 0;
/** Unsigned LEB128 of at most 8 bytes and below 2^53; -1 when bad. Sets varintEnd. */
function uvarint(raw: Uint8Array, p: number, end: number): number {
  let v = 0;
  let mul = 1;
  for (let n = 0; n < 8; n++) {
    if (p >= end) return -1;
    const b = raw[p++]!;
    v += (b & 0x7f) * mul;
    if (b < 0x80) {
      varintEnd = p;
      return v < 2 ** 53 ? v : -1;
    }
    mul *= 128;
  }
  return -1;
}
