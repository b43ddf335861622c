// `granule explore`: serves the explorer (build/explorer/, made by `npm run build`) on localhost
// with node:http. Static files only: no directory listings, nothing outside the directory.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createReadStream, existsSync, realpathSync, statSync } from 'node:fs';
import { extname, isAbsolute, join, relative, sep } from 'node:path';
import type { AddressInfo } from 'node:net';
import { InputError, UsageError, type Io } from './cli-io.ts';
import { packageRoot } from './record/toolchain.ts';

export const DEFAULT_PORT = 8177;
export const DEFAULT_HOST = '127.0.0.1';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.grt': 'application/octet-stream',
  '.md': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.woff2': 'font/woff2',
};

export function contentType(file: string): string {
  return TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/** build/explorer under the package root. */
export function explorerDir(): string {
  return join(packageRoot(), 'build', 'explorer');
}

/**
 * The file a request path names inside root, or null when the path is not acceptable: a '..' or
 * '.' segment (also percent-encoded), an encoded slash or backslash, a NUL, bad percent-encoding.
 * Checked on the raw path, before anything normalises it away.
 */
export function resolveRequestPath(root: string, rawUrl: string): string | null {
  const path = rawUrl.split(/[?#]/, 1)[0]!;
  if (!path.startsWith('/')) return null;
  const segments: string[] = [];
  for (const raw of path.slice(1).split('/')) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return null;
    }
    if (seg === '..' || seg === '.' || /[\\/\0]/.test(seg) || seg.includes(':')) return null;
    segments.push(seg);
  }
  // '/' and 'dir/' name the index page; only the root has one.
  if (segments[segments.length - 1] === '') segments[segments.length - 1] = 'index.html';
  if (segments.some((s) => s === '')) return null;
  const file = join(root, ...segments);
  const rel = relative(root, file);
  if (!rel || rel.startsWith('..') || isAbsolute(rel)) return null;
  return file;
}

export interface ExplorerServer {
  /** http://HOST:PORT/ (127.0.0.1 when listening on every interface) */
  url: string;
  port: number;
  /** the directory served */
  root: string;
  close(): Promise<void>;
}

export interface ExplorerServerOptions {
  /** 0 picks a free port; default 8177 */
  port?: number;
  /** default 127.0.0.1 */
  host?: string;
  /** the directory to serve; default build/explorer under the package root */
  root?: string;
}

function send(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}) {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...extra });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

function handler(root: string) {
  const realRoot = realpathSync(root);
  return (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'granule explore serves files: GET or HEAD only\n', { Allow: 'GET, HEAD' });
      return;
    }
    const file = resolveRequestPath(root, req.url ?? '');
    if (file === null) {
      send(res, 403, 'granule explore: that path is refused\n');
      return;
    }
    let st;
    let real: string;
    try {
      real = realpathSync(file);
      st = statSync(real);
    } catch {
      send(res, 404, 'granule explore: not found\n');
      return;
    }
    // A symlink inside the build must not lead out of it.
    const rel = relative(realRoot, real);
    if (rel.startsWith('..') || isAbsolute(rel) || !st.isFile()) {
      send(res, 404, 'granule explore: not found\n');
      return;
    }
    res.writeHead(200, {
      'Content-Type': contentType(real),
      'Content-Length': st.size,
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = createReadStream(real);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  };
}

const showHost = (host: string) => (host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host);

/** Serves the explorer; resolves once it listens. Errors are InputErrors worded for the user. */
export async function startExplorerServer(options: ExplorerServerOptions = {}): Promise<ExplorerServer> {
  const port = options.port ?? DEFAULT_PORT;
  const host = options.host ?? DEFAULT_HOST;
  const root = options.root ?? explorerDir();
  if (!existsSync(join(root, 'index.html'))) {
    throw new InputError(`the explorer is not built (no ${join(root, 'index.html')}): run \`npm run build\` first (or \`npm run build:sim && npm run build:explorer\`)`);
  }
  const server = createServer(handler(root));
  await new Promise<void>((done, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') fail(new InputError(`port ${port} on ${host} is already in use: pick another with --port N, or --port 0 for a free one`));
      else if (e.code === 'EACCES') fail(new InputError(`not allowed to listen on port ${port} on ${host}: pick a port above 1023 with --port N, or --port 0 for a free one`));
      else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') fail(new InputError(`cannot listen on host ${host} (${e.code}): give an address of this machine with --host, e.g. 127.0.0.1`));
      else fail(e);
    });
    server.listen(port, host, () => done());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://${showHost(host)}:${bound}/`,
    port: bound,
    root,
    close: () => new Promise<void>((done) => {
      server.close(() => done());
      server.closeAllConnections();
    }),
  };
}

/** Parses --port: a whole number 0..65535. */
export function parsePort(text: string): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) > 65535) throw new UsageError(`--port '${text}' is not a port number: give 0..65535 (0 picks a free port)`);
  return Number(text);
}

/** The path to show for the served directory: relative to the working directory when inside it. */
export function showDir(dir: string): string {
  const rel = relative(process.cwd(), dir);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel.split(sep).join('/') : dir;
}

/** granule explore: starts the server and returns; the open server keeps the process running. */
export async function exploreCommand(o: { port?: string; host?: string }, io: Io): Promise<ExplorerServer> {
  const port = o.port === undefined ? DEFAULT_PORT : parsePort(o.port);
  const server = await startExplorerServer({ port, host: o.host });
  const all = o.host === '0.0.0.0' || o.host === '::' ? ` (listening on every interface, ${o.host})` : '';
  io.err(`granule explore: serving ${showDir(server.root)} at ${server.url}${all} (Ctrl-C stops)\n`);
  return server;
}
