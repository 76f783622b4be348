// dashboard_load: how long the dashboard takes to show an experiment's whole history, in
// Debian's chromium (headless, driven by playwright-core from build/web/node_modules):
// from opening #/experiments/ID until every gradient snapshot is a heatmap column, then
// how long switching the heatmap's measure takes (a redraw of everything). Three rounds.
//
//   node bench/dashboard_load.mjs http://127.0.0.1:8080 EXPERIMENT_ID
//
// The experiment measured in docs/PERFORMANCE.md (1,536 snapshots of resnet's 62
// parameters): gradlab submit --model=resnet --dataset=synthetic --epochs=3
//   --max_train_samples=8192 --batch_size=16 --gradient_every_n_steps=1
//   --max_test_samples=64 --precision=bf16 --follow
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const require = createRequire(path.join(root, 'build/web/node_modules/resolve-from-here.js'));
const { chromium } = require('playwright-core');

const [base, id] = process.argv.slice(2);
if (!base || !id) {
  console.error('usage: node bench/dashboard_load.mjs http://HOST:PORT EXPERIMENT_ID');
  process.exit(2);
}
const events = await fetch(`${base}/api/v1/experiments/${id}/events?follow=false`);
const body = await events.text();
const snapshots = (body.match(/^event: gradients$/gm) || []).length;
console.log(`${snapshots} snapshots, ${(body.length / 1e6).toFixed(1)} MB of events`);

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
for (let round = 1; round <= 3; round++) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const opened = Date.now();
  await page.goto(`${base}/#/experiments/${id}`);
  await page.waitForFunction((n) => document.querySelector('[data-role=heatmap]')?.dataset.columns === n,
    String(snapshots), { timeout: 300000, polling: 20 });
  const loaded = Date.now() - opened;
  const switched = await page.evaluate(async () => {
    const select = document.querySelector('select[aria-label=measure]');
    const start = performance.now();
    select.value = 'ratio';
    select.dispatchEvent(new Event('change'));
    return performance.now() - start;
  });
  console.log(`round ${round}: all columns after ${loaded} ms; measure switch redraw ${switched.toFixed(0)} ms`);
  await page.close();
}
await browser.close();
