// source.ts for the browser: traces come as bytes (a fetch, or a file the user picked).
export { BytesSource, type ByteSource } from './bytes-source.ts';

export function openFileSource(file: string): never {
  throw new Error(`${file}: the browser reads traces from memory (TraceReader.fromBytes), not from files`);
}
