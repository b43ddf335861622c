// The pictures of docs/explorer.md: each view in the state the tutorial describes, taken in
// Debian's chromium from the built page (npm run build first).
//
//   node --import tsx scripts/explorer-pictures.ts      (npm run pictures)
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { startExplorerServer } from '../src/explore.ts';
import { packageRoot } from '../src/record/toolchain.ts';
import { findChromium, launchOptions, NO_CHROMIUM } from '../test/support/browser.ts';

const out = join(packageRoot(), 'docs', 'img');
const executable = findChromium();
if (!executable) {
  console.error(`explorer-pictures: ${NO_CHROMIUM}`);
  process.exit(1);
}

const shots: [string, (page: Page) => Promise<void>][] = [
  ['walk', async (page) => {
    await page.fill('[data-testid=walk-gva]', '0x401234');
    await page.selectOption('[data-testid=walk-kind]', 'read');
    await page.selectOption('[data-testid=walk-user]', 'user');
    await page.click('[data-testid=walk-run]');
    await page.click('[data-testid=walk-access]');
    await page.locator('[data-testid=walk-fault]').scrollIntoViewIfNeeded();
  }],
  ['practice', async (page) => {
    await page.fill('[data-testid=practice-seed]', '42');
    await page.click('[data-testid=practice-seed-load]');
    await page.waitForSelector('[data-testid=practice-question][data-seed="42"]');
    await page.click('[data-testid=practice-reveal]');
    const answer = await page.getAttribute('[data-testid=practice-solution]', 'data-answer');
    await page.fill('[data-testid=practice-answer]', answer ?? '');
    await page.click('[data-testid=practice-check]');
  }],
  ['granularity', async (page) => {
    await page.selectOption('[data-testid=gran-mode]', 'gpt-wp');
    await page.fill('[data-testid=gran-slider]', '4');
    await page.waitForSelector('[data-testid=gran-status][data-state=idle]', { timeout: 120_000 });
    await page.locator('[data-testid=gran-checkpoint-bytes]').scrollIntoViewIfNeeded();
  }],
  ['planes', async (page) => {
    const unit = page.locator('[data-testid=planes-unit]');
    const values = await unit.locator('option').evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
    await unit.selectOption(values[Math.min(2, values.length - 1)]!);
  }],
];

const server = await startExplorerServer({ port: 0 });
const browser = await chromium.launch(launchOptions(executable));
try {
  mkdirSync(out, { recursive: true });
  for (const [id, prepare] of shots) {
    const page = await browser.newPage({ viewport: { width: 1200, height: 860 } });
    await page.goto(`${server.url}#${id}`);
    await page.waitForSelector(`#panel-${id}[data-state=ready]`, { timeout: 60_000 });
    await prepare(page);
    const file = join(out, `explorer-${id}.png`);
    await page.screenshot({ path: file });
    console.log(`explorer-pictures: wrote ${file}`);
    await page.close();
  }
} finally {
  await browser.close();
  await server.close();
}
