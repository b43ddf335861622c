// The chromium the browser tests and the explorer's pictures use: Debian's, driven by
// playwright-core (no browser download). $CHROMIUM names another one.
import { existsSync } from 'node:fs';

/** Where chromium is looked for, in order ($CHROMIUM first when set). */
export const chromiumCandidates = (): string[] =>
  [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter((p): p is string => !!p);

/** The chromium executable to use, or null when there is none. */
export function findChromium(): string | null {
  return chromiumCandidates().find((p) => existsSync(p)) ?? null;
}

/** Words for a skip or an error when findChromium() finds none. */
export const NO_CHROMIUM = 'no chromium at $CHROMIUM or /usr/bin/chromium (apt-get install chromium)';

/** Command-line switches for chromium in a container or CI (no sandbox, no GPU, no small /dev/shm). */
export const CHROMIUM_ARGS: readonly string[] = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'];

/** playwright-core's launch options for `executable`. */
export const launchOptions = (executable: string) => ({ executablePath: executable, args: [...CHROMIUM_ARGS] });
