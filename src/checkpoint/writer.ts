// Incremental checkpoint writer: one file per epoch (the base image, then the dirty units of each
// epoch), each written to a temp file, synced and renamed, then the manifest rewritten the same way.
// The manifest only ever lists complete files, so whatever stops the writer (a crash, a full disk,
// a kill), the latest epoch it lists can be restored.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import * as zlib from 'node:zlib';
import { putUvarint } from '../trace/format.ts';
import { syncDir, abortOnExit, finished } from '../fsync.ts';
import {
  BLOCK_FLUSH_BYTES, CHAIN_ID_BYTES, CODEC_DEFLATE, CODEC_NONE, CheckpointError, DIGEST_BYTES, FORMAT_NAME, FRAME_BYTES,
  FRAME_LIMIT, KIND_BASE, KIND_INCREMENT, MANIFEST, MAX_BLOCK_RAW, VERSION_MAJOR, VERSION_MINOR, encodeBlockHeader,
  encodeEndRecord, encodeFileHeader, encodeManifest, epochFileName, metaProblem, type Manifest, type ManifestEpoch,
} from './format.ts';

export { CheckpointError } from './format.ts';

export interface CheckpointMeta {
  /** The trace the checkpoints come from (restore --verify re-runs it). */
  trace: { path: string; bytes: number; sha256: string };
  mode: string;
  layout: string;
  granularity: number | 'adaptive';
  /** Writes per epoch; 0 when epochs come from the trace's own epoch marks. */
  epochWrites: number;
  /** ISO 8601; the writer fills it in when absent. */
  created?: string;
  [k: string]: unknown;
}

/** A byte range of one frame: offset + bytes.length <= 4096, bytes.length >= 1. */
export interface Unit { frame: number; offset: number; bytes: Uint8Array }

export interface CheckpointWriterOptions {
  /** Compression of each block (default 'deflate'; a block deflate does not shrink is stored as it is). */
  codec?: 'none' | 'deflate';
  /** deflate level 0..9 (default 1: dirty data is mostly pointers and small integers; higher levels gain little). */
  level?: number;
  /** fsync files and the directory before each rename (default true). false only for benchmarks and tests. */
  sync?: boolean;
}

export interface EpochSummary {
  epoch: number;
  file: string;
  /** Size of the epoch's file, headers and compression included. */
  bytes: number;
  units: number;
  /** Sum of the units' lengths. */
  dataBytes: number;
}

/**
 * Hooks for tests that simulate a crash at the worst moments (a child process kills itself from
 * one): `beforeRename` runs when a temp file is complete and synced, just before it takes its name.
 */
export const _testHooks: {
  beforeRename?: (what: 'epoch' | 'manifest', tmp: string, target: string) => void;
  /** A fixed chain id, so that the worked example in the docs is reproducible. */
  chainId?: Uint8Array;
} = {};


export class CheckpointWriter {
  /** DIR must not exist or be empty (refused otherwise, naming it: nothing is ever overwritten). */
  static create(dir: string, meta: CheckpointMeta, opts: CheckpointWriterOptions = {}): CheckpointWriter {
    const problem = metaProblem(meta);
    if (problem) throw new TypeError(`${dir}: ${problem}`);
    const codec = opts.codec ?? 'deflate';
    if (codec !== 'none' && codec !== 'deflate') throw new RangeError(`${dir}: codec must be none or deflate, got ${String(codec)}`);
    const level = opts.level ?? 1;
    if (!(Number.isInteger(level) && level >= 0 && level <= 9)) throw new RangeError(`${dir}: deflate level must be an integer from 0 to 9, got ${level}`);

    let created = false;
    let st: fs.Stats | undefined;
    try { st = fs.statSync(dir); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CheckpointError(dir, {}, `cannot use the directory: ${(e as Error).message}`);
    }
    if (st) {
      if (!st.isDirectory()) throw new CheckpointError(dir, {}, 'exists and is not a directory', 'give a new or empty directory for the checkpoint');
      const entries = fs.readdirSync(dir);
      if (entries.length > 0) {
        const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? ', ...' : '');
        throw new CheckpointError(dir, {}, `the directory is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}: ${shown}); nothing was changed`,
          'give a new or empty directory: granule never overwrites a checkpoint');
      }
    } else {
      try { fs.mkdirSync(dir, { recursive: true }); } catch (e) {
        throw new CheckpointError(dir, {}, `cannot create the directory: ${(e as Error).message}`);
      }
      created = true;
    }

    const fullMeta: CheckpointMeta = { ...meta, created: meta.created ?? new Date().toISOString() };
    const w = new CheckpointWriter(dir, Buffer.from(_testHooks.chainId ?? randomBytes(CHAIN_ID_BYTES)), fullMeta, codec === 'deflate' ? CODEC_DEFLATE : CODEC_NONE, level, opts.sync ?? true);
    try {
      w.writeManifest(true);
    } catch (e) {
      w.removeTemp();
      if (created) try { fs.rmdirSync(dir); } catch { /* not empty after all: leave it */ }
      throw e;
    }
    abortOnExit(w);
    return w;
  }

  private readonly epochs: ManifestEpoch[] = [];
  private prevDigest: Uint8Array = new Uint8Array(DIGEST_BYTES);
  private state: 'open' | 'closed' | 'aborted' = 'open';
  private tmp: string | null = null;
  private fd = -1;
  private hash: Hash | null = null;
  private fileBytes = 0;
  // Block being filled; reused across epochs. A record never straddles blocks.
  private readonly buf = Buffer.alloc(MAX_BLOCK_RAW);
  private pos = 0;
  private inBlock = 0;
  private blocks = 0;
  private units = 0;
  private dataBytes = 0;

  private constructor(
    readonly dir: string,
    private readonly chainId: Buffer,
    readonly meta: CheckpointMeta,
    private readonly codec: number,
    private readonly level: number,
    private readonly sync: boolean,
  ) {}

  /** The latest epoch written and listed in the manifest, -1 before the base. */
  get latest(): number { return this.epochs.length - 1; }

  /** Epoch 0: the base image, whole frames (a frame listed twice: the later copy wins). */
  writeBase(frames: Iterable<{ frame: number; bytes: Uint8Array }>): EpochSummary {
    this.checkOpen();
    if (this.epochs.length > 0) throw new Error(`${this.dir}: the base (epoch 0) is written already`);
    return this.writeEpoch(0, KIND_BASE, () => {
      let n = 0;
      for (const f of frames) {
        n++;
        if (!(f.bytes instanceof Uint8Array) || f.bytes.length !== FRAME_BYTES) {
          throw new RangeError(`${this.dir}: base, frame ${n} (number ${f.frame}): bytes must be a Uint8Array of ${FRAME_BYTES} bytes, got ${f.bytes instanceof Uint8Array ? f.bytes.length + ' bytes' : Object.prototype.toString.call(f.bytes)}`);
        }
        this.unit(0, n, f.frame, 0, f.bytes);
      }
    });
  }

  /**
   * Epoch e >= 1 (the next after the latest): exactly the dirty units' bytes, copied before this
   * returns. Any order; repeated and overlapping units are kept in order, so the later one wins at
   * restore. A frame not in the base starts as zeros. Durable when this returns.
   */
  writeIncrement(epoch: number, units: Iterable<Unit>): EpochSummary {
    this.checkOpen();
    if (this.epochs.length === 0) throw new Error(`${this.dir}: write the base (writeBase) before epoch ${epoch}`);
    if (epoch !== this.epochs.length) {
      throw new RangeError(`${this.dir}: epoch must be ${this.epochs.length} (the one after the latest, ${this.epochs.length - 1}), got ${epoch}`);
    }
    return this.writeEpoch(epoch, KIND_INCREMENT, () => {
      let n = 0;
      for (const u of units) this.unit(epoch, ++n, u.frame, u.offset, u.bytes);
    });
  }

  /** Marks the manifest closed (a run that stops without close() is still restorable). */
  close(): { dir: string; epochs: number; latest: number; bytes: number } {
    this.checkOpen();
    this.writeManifest(false, true);
    this.state = 'closed';
    finished(this);
    return { dir: this.dir, epochs: this.epochs.length, latest: this.latest, bytes: this.epochs.reduce((s, e) => s + e.bytes, 0) };
  }

  /** Stops: removes an unfinished temp file; the epochs already written stay restorable. Safe to repeat. */
  abort(): void {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    finished(this);
    this.removeTemp();
  }

  private checkOpen(): void {
    if (this.state !== 'open') throw new Error(`${this.dir}: the checkpoint writer is ${this.state}`);
  }

  private unit(epoch: number, n: number, frame: number, offset: number, bytes: Uint8Array): void {
    const len = bytes instanceof Uint8Array ? bytes.length : -1;
    if (!(Number.isInteger(frame) && frame >= 0 && frame < FRAME_LIMIT && Number.isInteger(offset) && offset >= 0 && len >= 1 && offset + len <= FRAME_BYTES)) {
      const where = `${this.dir}: epoch ${epoch}, unit ${n}`;
      if (!(Number.isInteger(frame) && frame >= 0 && frame < FRAME_LIMIT)) throw new RangeError(`${where}: frame must be an integer in [0, 2^41), got ${frame}`);
      if (len < 0) throw new RangeError(`${where}: bytes must be a Uint8Array, got ${Object.prototype.toString.call(bytes)}`);
      if (len === 0) throw new RangeError(`${where} (frame ${frame}): bytes is empty; leave empty units out`);
      throw new RangeError(`${where} (frame ${frame}): offset must be an integer with offset + length <= ${FRAME_BYTES}, got ${offset} + ${len}`);
    }
    let p = putUvarint(this.buf, this.pos, frame);
    p = putUvarint(this.buf, p, offset);
    p = putUvarint(this.buf, p, len);
    this.buf.set(bytes, p);
    this.pos = p + len;
    this.inBlock++;
    this.units++;
    this.dataBytes += len;
    if (this.pos >= BLOCK_FLUSH_BYTES) this.flush();
  }

  private writeEpoch(epoch: number, kind: number, fill: () => void): EpochSummary {
    const name = epochFileName(epoch);
    const target = path.join(this.dir, name);
    this.pos = this.inBlock = this.blocks = this.units = this.dataBytes = this.fileBytes = 0;
    let digest: Buffer;
    try {
      this.openTemp(name);
      this.hash = createHash('sha256');
      this.write(encodeFileHeader(kind, this.chainId, epoch, this.prevDigest));
      fill();
      this.flush();
      this.write(encodeEndRecord(this.blocks, this.units, this.dataBytes));
      digest = this.hash.digest();
      this.hash = null;
      this.finishTemp('epoch', target);
    } catch (e) {
      this.hash = null;
      this.removeTemp();
      throw e;
    }
    const entry: ManifestEpoch = {
      epoch, kind: epoch === 0 ? 'base' : 'increment', file: name, bytes: this.fileBytes, units: this.units,
      dataBytes: this.dataBytes, sha256: digest.toString('hex'),
    };
    this.epochs.push(entry);
    try {
      this.writeManifest(false);
    } catch (e) {
      // The file stays as an orphan the restorer ignores; the epoch can be written again.
      this.epochs.pop();
      this.removeTemp();
      throw e;
    }
    this.prevDigest = digest;
    return { epoch, file: target, bytes: entry.bytes, units: entry.units, dataBytes: entry.dataBytes };
  }

  private flush(): void {
    if (this.inBlock === 0) return;
    const raw = this.buf.subarray(0, this.pos);
    let codec = this.codec;
    let stored: Uint8Array = raw;
    if (codec === CODEC_DEFLATE) stored = zlib.deflateRawSync(raw, { level: this.level });
    if (stored.length >= raw.length) { codec = CODEC_NONE; stored = raw; }
    this.write(encodeBlockHeader(codec, this.inBlock, raw.length, stored));
    this.write(stored);
    this.blocks++;
    this.pos = 0;
    this.inBlock = 0;
  }

  private writeManifest(first: boolean, closed = false): void {
    const m: Manifest = {
      format: FORMAT_NAME, version: `${VERSION_MAJOR}.${VERSION_MINOR}`, chainId: this.chainId.toString('hex'), closed,
      meta: this.meta, epochs: this.epochs,
    };
    const target = path.join(this.dir, MANIFEST);
    this.openTemp(MANIFEST);
    this.write(encodeManifest(m));
    if (first) {
      // Claim the directory with a link, which fails if another writer got there first.
      this.finishTemp('manifest', target, true);
    } else {
      this.finishTemp('manifest', target);
    }
  }

  private openTemp(name: string): void {
    this.tmp = path.join(this.dir, `.${name}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
    try {
      this.fd = fs.openSync(this.tmp, 'wx');
    } catch (e) {
      this.tmp = null;
      throw new CheckpointError(path.join(this.dir, name), {}, `cannot create a temp file beside it: ${(e as Error).message}`);
    }
  }

  private finishTemp(what: 'epoch' | 'manifest', target: string, exclusive = false): void {
    if (this.sync) fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.fd = -1;
    _testHooks.beforeRename?.(what, this.tmp!, target);
    if (exclusive) {
      try {
        fs.linkSync(this.tmp!, target);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') throw new CheckpointError(this.dir, {}, 'another checkpoint writer started in this directory at the same time', 'give each run its own directory');
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw e;
        fs.renameSync(this.tmp!, target); // no hard links on this file system
      }
      try { fs.unlinkSync(this.tmp!); } catch { /* renamed instead */ }
    } else {
      fs.renameSync(this.tmp!, target);
    }
    this.tmp = null;
    if (this.sync) syncDir(this.dir);
  }

  private removeTemp(): void {
    if (this.fd >= 0) {
      try { fs.closeSync(this.fd); } catch { /* already failing; the unlink matters more */ }
      this.fd = -1;
    }
    if (this.tmp !== null) {
      try { fs.unlinkSync(this.tmp); } catch { /* gone already */ }
      this.tmp = null;
    }
  }

  private write(data: Uint8Array): void {
    let off = 0;
    while (off < data.length) off += fs.writeSync(this.fd, data, off, data.length - off);
    this.hash?.update(data);
    this.fileBytes += data.length;
  }
}

