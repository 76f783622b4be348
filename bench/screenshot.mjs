// Saves a screenshot of a dashboard page, as the browser test takes them: Debian's
// chromium, headless, driven by playwright-core from build/web/node_modules.
//   node bench/screenshot.mjs URL OUT.png [SELECTOR]
// waits for SELECTOR (default body) and two seconds more, then takes the whole page. Used by bench/sweep_study for docs/RESULTS.md.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, out, selector = 'body'] = process.argv.slice(2);
if (!url || !out) {
  console.error('usage: node bench/screenshot.mjs URL OUT.png [SELECTOR]');
  process.exit(2);
}
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modules = process.env.GRADLAB_NODE_MODULES || path.join(root, 'build/web/node_modules');
const require = createRequire(path.join(modules, 'resolve-from-here.js'));
const { chromium } = require('playwright-core');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(url);
  await page.locator(selector).first().waitFor({ timeout: 60000 });
  await page.waitForTimeout(2000);  // the charts' own animation
  await page.screenshot({ path: out, fullPage: true });
  if (errors.length) throw new Error(`the page reported errors: ${errors.join('; ')}`);
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
