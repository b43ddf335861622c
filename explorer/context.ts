// The contract between the explorer's shell (main.ts) and its views: explorer/README.md.

export interface TraceEntry {
  name: string;
  /** file name, relative to the page */
  file: string;
  bytes: number;
  events: number;
  source?: string;
  description: string;
}

export interface ExplorerContext {
  /** the simulator module's bytes (pass as Sim.create({ wasm })) */
  wasm: ArrayBuffer;
  /** the bundled traces (fetch(new URL(t.file, base))) */
  traces: TraceEntry[];
  /** where the page's files are: new URL('.', location.href) */
  base: URL;
  /** shows a visible, specific message in the page's error area; the page keeps working */
  report(message: string): void;
}

export type Mount = (root: HTMLElement, ctx: ExplorerContext) => void | Promise<void>;
