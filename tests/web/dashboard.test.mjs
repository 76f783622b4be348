// The dashboard and reports in a real browser: Debian's chromium, headless, driven by
// playwright-core, against the real gradlabd and gradlab binaries. Screenshots go to
// $GRADLAB_ARTIFACTS. Run by ctest (dashboard_browser_test), which sets:
//   GRADLABD, GRADLAB        the binaries
//   GRADLAB_NODE_MODULES     build/web/node_modules (playwright-core, from package-lock.json)
//   GRADLAB_ARTIFACTS        where screenshots and the report are written
//   CHROMIUM                 optional; /usr/bin/chromium by default
// If chromium cannot run, every test fails and says why: never a silent pass.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

// How many times slower than usual gradlabd runs here: 5 in the sanitizers' build
// (scripts/test --sanitize), where every wait is that much longer.
const slowdown = Number(process.env.GRADLAB_TEST_SLOWDOWN || '1');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run this test through ctest)`);
  return value;
};
const require = createRequire(path.join(env('GRADLAB_NODE_MODULES'), 'resolve-from-here.js'));
const { chromium } = require('playwright-core');
const artifacts = env('GRADLAB_ARTIFACTS');
fs.mkdirSync(artifacts, { recursive: true });

let server;
let grpcPort;
let base;
let browser;
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gradlab-browser-test-'));

// Starts gradlabd on free ports with `flags`; returns the process and its two ports.
async function startGradlabd(flags) {
  const child = spawn(env('GRADLABD'), ['--listen=127.0.0.1:0', '--http_listen=127.0.0.1:0',
    '--threads_per_job=2', ...flags], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  let grpc;
  let http;
  const timeout = setTimeout(() => child.kill('SIGKILL'), 60000 * slowdown);
  for await (const line of lines) {
    grpc = grpc || (line.match(/^gradlabd listening on port (\d+)$/) || [])[1];
    http = http || (line.match(/^gradlabd dashboard on http port (\d+)$/) || [])[1];
    if (grpc && http) break;
  }
  clearTimeout(timeout);
  assert.ok(grpc && http, 'gradlabd did not print its ports');
  return { child, grpc, http };
}

async function stopGradlabd(child) {
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
}

async function startServer() {
  const started = await startGradlabd([`--state_dir=${stateDir}`]);
  server = started.child;
  grpcPort = started.grpc;
  base = `http://127.0.0.1:${started.http}`;
}

async function launchChromium() {
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    throw new Error(`chromium cannot run: ${executablePath} does not exist ` +
      '(scripts/setup --test installs Debian\'s chromium)');
  }
  try {
    // The flags keep chromium off the network it would otherwise reach for by itself.
    return await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu',
      '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'] });
  } catch (error) {
    throw new Error(`chromium cannot run: ${error.message}`);
  }
}

function gradlab(...args) {
  return new Promise((resolve, reject) => {
    const flags = [`--server=127.0.0.1:${grpcPort}`, `--timeout=${10 * slowdown}`];
    execFile(env('GRADLAB'), [...flags, ...args], (error, stdout, stderr) => {
      if (error) reject(new Error(`gradlab ${args.join(' ')}: ${stderr || error.message}`));
      else resolve(stdout.trim());
    });
  });
}

async function api(urlPath) {
  const response = await fetch(base + urlPath);
  assert.equal(response.status, 200, `GET ${urlPath}`);
  return response.json();
}

async function waitFor(what, check, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs * slowdown;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Pixels of a canvas that are not (nearly) white.
async function inkedPixels(locator) {
  return locator.evaluate((canvas) => {
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let inked = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] > 0 && (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235)) inked++;
    }
    return inked;
  });
}

// A page that fails the test on any script error.
async function newPage(context) {
  const page = await context.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(30000 * slowdown);
  page.errors = [];
  page.on('pageerror', (error) => page.errors.push(error.message));
  return page;
}

const submitted = {};

before(async () => {
  await startServer();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await stopGradlabd(server);
  fs.rmSync(stateDir, { recursive: true, force: true });
});

test('the experiment page and the list update live while an experiment trains', async () => {
  submitted.shallow = await gradlab('submit', '--model=simple_cnn', '--dataset=fashion_mnist',
    '--epochs=6', '--max_train_samples=8000', '--max_test_samples=1000',
    '--gradient_every_n_steps=5', '--name=shallow');
  await waitFor('RUNNING', async () => (await api(`/api/v1/experiments/${submitted.shallow}`)).state === 'RUNNING');

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await newPage(context);
  await page.goto(`${base}/#/experiments/${submitted.shallow}`);
  await page.evaluate(() => { window.loadedOnce = true; });
  const heatmap = page.locator('[data-role=heatmap]');
  const lossChart = page.locator('[data-role=loss-chart]');
  const columns = async () => Number(await heatmap.getAttribute('data-columns'));
  const epochPoints = async () => Number(await lossChart.getAttribute('data-epoch-points'));
  const batchPoints = async () => Number(await lossChart.getAttribute('data-batch-points'));
  await waitFor('the first heatmap column', async () => (await columns()) > 0);
  const [columns0, epochs0, batches0] = [await columns(), await epochPoints(), await batchPoints()];
  assert.ok(epochs0 < 6, `all epochs were already done when the page opened (${epochs0})`);

  // Live: more columns, more curve points, with no reload.
  await waitFor('new heatmap columns', async () => (await columns()) > columns0 + 2);
  await waitFor('a new epoch point', async () => (await epochPoints()) > epochs0);
  await waitFor('new batch points', async () => (await batchPoints()) > batches0);
  assert.equal(await page.evaluate(() => window.loadedOnce), true, 'the page reloaded');
  assert.ok(await inkedPixels(heatmap) > 2000, 'the heatmap is blank');
  assert.ok(await inkedPixels(lossChart.locator('canvas')) > 500, 'the loss curves are blank');
  await page.locator('[data-role=batch-progress]').waitFor();

  // The step-1 snapshot is one click away.
  await page.locator('[data-role=step-1]').click();
  await waitFor('the step-1 bars', async () =>
    (await page.locator('[data-role=bars-chart]').getAttribute('data-step')) === '1');
  assert.ok(await inkedPixels(page.locator('[data-role=bars-chart] canvas')) > 500, 'no bars');
  await page.screenshot({ path: path.join(artifacts, 'dashboard-experiment.png') });

  // What it predicts: the latest epoch's confusion matrix, and the untrained model's at
  // the slider's start (epoch 0), every cell of each counted once.
  const confusion = page.locator('[data-role=confusion]');
  await waitFor('a confusion matrix', async () => (await confusion.getAttribute('data-epoch')) >= '1');
  await page.locator('[data-role=predictions-slider]').fill('0');
  await waitFor('epoch 0', async () => (await confusion.getAttribute('data-epoch')) === '0');
  assert.ok(Number(await confusion.getAttribute('data-cells')) >= 1);
  assert.ok(await inkedPixels(confusion) > 1000, 'the confusion matrix is blank');
  const bars = page.locator('[data-role=predicted-classes]');
  assert.equal(await bars.getAttribute('data-epoch'), '0');
  assert.match(await bars.innerText(), /T-shirt\/top/);
  await page.screenshot({ path: path.join(artifacts, 'dashboard-predictions.png'), fullPage: true });

  // The list: this experiment running, with its batch progress.
  const list = await newPage(context);
  await list.goto(`${base}/#/`);
  const row = list.locator(`tr[data-id="${submitted.shallow}"]`);
  await waitFor('the running row with its speed', async () =>
    /RUNNING/.test(await row.innerText()) && /img\/s/.test(await row.innerText()));
  await list.screenshot({ path: path.join(artifacts, 'dashboard-list.png') });
  await waitFor('SUCCEEDED in the list', async () => /SUCCEEDED/.test(await row.innerText()), 120000);
  assert.deepEqual([...page.errors, ...list.errors], []);
  await context.close();
});

test('the compare view overlays experiments', async () => {
  submitted.deep = await gradlab('submit', '--model=deep_cnn', '--dataset=fashion_mnist',
    '--epochs=1', '--max_train_samples=512', '--max_test_samples=256', '--name=deep');
  await waitFor('deep_cnn finished', async () =>
    (await api(`/api/v1/experiments/${submitted.deep}`)).state === 'SUCCEEDED', 180000);
  const context = await browser.newContext();
  const page = await newPage(context);
  await page.goto(`${base}/#/compare/${submitted.shallow},${submitted.deep}`);
  const flow = page.locator('[data-role=compare-flow]');
  await waitFor('both step-1 gradient series', async () => (await flow.getAttribute('data-series')) === '2');
  assert.ok(await inkedPixels(flow.locator('canvas')) > 500, 'the overlay is blank');
  assert.ok(await inkedPixels(page.locator('[data-role=compare-accuracy] canvas')) > 500);
  // What each predicts, untrained and after its last epoch: shares of the test images.
  const predicted = page.locator('[data-role=compare-predicted]');
  const histogram = (id, which) => predicted.locator(`tr[data-key="${id}"] [data-role=predicted-${which}]`);
  await waitFor('the deep run\'s final histogram', async () =>
    (await histogram(submitted.deep, 'final').getAttribute('data-epoch')) === '1');
  assert.equal(await histogram(submitted.shallow, 'final').getAttribute('data-epoch'), '6');
  for (const id of [submitted.shallow, submitted.deep]) {
    for (const which of ['initial', 'final']) {
      const shares = (await histogram(id, which).getAttribute('data-shares')).split(',').map(Number);
      assert.equal(shares.length, 10);
      assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 0.002, `${id} ${which}: ${shares}`);
    }
  }
  assert.equal(await histogram(submitted.shallow, 'initial').getAttribute('data-epoch'), '0');
  await page.screenshot({ path: path.join(artifacts, 'dashboard-compare.png'), fullPage: true });
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('a 110-layer ResNet\'s gradient flow is labelled by stage, input to output', async () => {
  const id = await gradlab('submit', '--model=cifar_resnet', '--depth=110', '--dataset=synthetic',
    '--epochs=1', '--batch_size=16', '--max_train_samples=32', '--max_test_samples=16',
    '--name=resnet-110');
  await waitFor('SUCCEEDED', async () =>
    (await api(`/api/v1/experiments/${id}`)).state === 'SUCCEEDED', 180000);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await newPage(context);
  await page.goto(`${base}/#/experiments/${id}`);
  const heatmap = page.locator('[data-role=heatmap]');
  await waitFor('the heatmap', async () => Number(await heatmap.getAttribute('data-columns')) > 0);
  // 109 convs and the linear layer, labelled by stage rather than 110 names.
  assert.equal(await heatmap.getAttribute('data-rows'), '110');
  assert.equal(await heatmap.getAttribute('data-stages'), 'conv1,layer1,layer2,layer3,fc');
  const box = await heatmap.boundingBox();
  assert.ok(box.height < 520, `the heatmap is ${box.height} px tall`);

  await page.locator('[data-role=step-1]').click();
  const bars = page.locator('[data-role=bars-chart]');
  await waitFor('the step-1 bars', async () => (await bars.getAttribute('data-step')) === '1');
  assert.equal(await bars.getAttribute('data-stages'), 'conv1,layer1,layer2,layer3,fc');
  assert.ok(await inkedPixels(bars.locator('canvas')) > 500, 'no bars');
  await page.screenshot({ path: path.join(artifacts, 'dashboard-resnet110.png'), fullPage: true });

  // Every parameter: BatchNorm's too, three times the rows, the same stages plus bn1.
  await page.getByLabel('layer weights only').uncheck();
  await waitFor('every parameter', async () => Number(await heatmap.getAttribute('data-rows')) > 300);
  assert.equal(await heatmap.getAttribute('data-stages'), 'conv1,bn1,layer1,layer2,layer3,fc');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('the sweep page shows the grid, the bands and every cell\'s gradient flow, live', async () => {
  const id = await gradlab('sweep', '--nofollow', '--vary=batch_norm=false,true', '--seeds=2',
    '--model=mlp', '--dataset=synthetic', '--epochs=3', '--max_train_samples=2048',
    '--max_test_samples=256', '--batch_size=64', '--name=bn study');
  const context = await browser.newContext();
  const page = await newPage(context);
  await page.goto(`${base}/#/sweeps/${id}`);
  const table = page.locator('[data-role=sweep-table]');
  await table.waitFor();
  assert.equal(await table.locator('tr[data-cell]').count(), 2);
  // Live: the page follows the runs to the end without a reload.
  await page.evaluate(() => { window.loadedOnce = true; });
  const summary = () => page.locator('[data-role=sweep-summary]').innerText();
  await waitFor('the sweep SUCCEEDED on the page', async () =>
    /SUCCEEDED 4 \/ 4 runs done/.test(await summary()), 120000).catch(async (error) => {
    await page.screenshot({ path: path.join(artifacts, 'dashboard-sweep-failed.png'), fullPage: true });
    throw new Error(`${error.message}; the page says "${await summary()}", the server ` +
      `${JSON.stringify((await api(`/api/v1/sweeps/${id}`)).state)}; errors ${page.errors}`);
  });
  assert.equal(await page.evaluate(() => window.loadedOnce), true, 'the page reloaded');
  const sweep = await api(`/api/v1/sweeps/${id}`);
  const row = await table.locator('tr[data-cell="1"]').innerText();
  assert.match(row, /batch_norm=true/);
  const final = sweep.cells[1].finalTestAccuracy;
  assert.ok(row.includes(`${(100 * final.mean).toFixed(1)} ± ${(100 * final.std).toFixed(1)}%`), row);
  await waitFor('both cells\' step-1 gradients', async () =>
    (await page.locator('[data-role=sweep-flow]').getAttribute('data-series')) === '2');
  assert.equal(await page.locator('[data-role=sweep-accuracy]').getAttribute('data-epochs'), '3');
  for (const role of ['sweep-accuracy', 'sweep-loss', 'sweep-flow']) {
    assert.ok(await inkedPixels(page.locator(`[data-role=${role}] canvas`)) > 500, `${role} is blank`);
  }
  // Each cell's predicted classes, untrained and after epoch 3: the mean over its seeds.
  const finalShares = await page.locator(
    '[data-role=sweep-predicted] tr[data-key="1"] [data-role=predicted-final]');
  assert.equal(await finalShares.getAttribute('data-epoch'), '3');
  assert.deepEqual((await finalShares.getAttribute('data-shares')).split(','),
    sweep.cells[1].finalPredictedClasses.share.map((s) => (s.mean || 0).toFixed(4)));
  assert.equal(await page.locator(
    '[data-role=sweep-predicted] tr[data-key="0"] [data-role=predicted-initial]').getAttribute('data-epoch'), '0');
  await page.screenshot({ path: path.join(artifacts, 'dashboard-sweep.png'), fullPage: true });

  // The list links to it.
  const list = await newPage(context);
  await list.goto(`${base}/#/`);
  await list.locator(`[data-role=sweep-list] tr[data-sweep="${id}"]`).waitFor();
  assert.deepEqual([...page.errors, ...list.errors], []);
  await context.close();

  // Its report: the same grid, bands and flow, from a file with no network.
  const file = path.join(artifacts, 'sweep-report.html');
  assert.match(await gradlab('report', id, '-o', file), /: 1 sweep, 0 experiments, /);
  const offline = await browser.newContext({ offline: true });
  const report = await newPage(offline);
  await report.goto(`file://${file}`);
  await report.locator('body[data-rendered=true]').waitFor();
  const reportRow = await report.locator('[data-role=sweep-table] tr[data-cell="1"]').innerText();
  assert.ok(reportRow.includes(`${(100 * final.mean).toFixed(1)} ± ${(100 * final.std).toFixed(1)}%`),
    reportRow);
  for (const role of ['sweep-accuracy', 'sweep-loss', 'sweep-flow']) {
    assert.ok(await inkedPixels(report.locator(`[data-role=${role}] canvas`)) > 500,
      `the report's ${role} is blank`);
  }
  await report.screenshot({ path: path.join(artifacts, 'sweep-report.png'), fullPage: true });
  assert.deepEqual(report.errors, []);
  await offline.close();
});

test('a report opens from its file with no network and shows its charts', async () => {
  const file = path.join(artifacts, 'report.html');
  await gradlab('report', submitted.shallow, submitted.deep, '-o', file);
  const context = await browser.newContext({ offline: true });
  const requested = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:') || url.startsWith('data:')) return route.continue();
    requested.push(url);
    return route.abort();
  });
  const page = await newPage(context);
  await page.goto(`file://${file}`);
  await page.locator('body[data-rendered=true]').waitFor();
  assert.deepEqual(requested, [], 'the report fetched something');
  assert.deepEqual(page.errors, []);
  const heatmaps = page.locator('[data-role=heatmap]');
  assert.equal(await heatmaps.count(), 2);
  for (let i = 0; i < 2; i++) {
    assert.ok(Number(await heatmaps.nth(i).getAttribute('data-columns')) > 0);
    assert.ok(await inkedPixels(heatmaps.nth(i)) > 1000, `heatmap ${i} is blank`);
  }
  // Each experiment's confusion matrix after its last epoch.
  const confusions = page.locator('[data-role=confusion]');
  assert.equal(await confusions.count(), 2);
  assert.deepEqual([await confusions.nth(0).getAttribute('data-epoch'),
    await confusions.nth(1).getAttribute('data-epoch')], ['6', '1']);
  for (let i = 0; i < 2; i++) assert.ok(await inkedPixels(confusions.nth(i)) > 1000, `confusion ${i} is blank`);
  // Two experiments' loss, accuracy and bars, plus the three overlays.
  const charts = page.locator('.uplot canvas');
  assert.equal(await charts.count(), 9);
  for (let i = 0; i < 9; i++) assert.ok(await inkedPixels(charts.nth(i)) > 300, `chart ${i} is blank`);
  await page.screenshot({ path: path.join(artifacts, 'report.png') });
  await page.screenshot({ path: path.join(artifacts, 'report-full.png'), fullPage: true });
  await context.close();
});

test('a server with tokens asks for one, then shows the dashboard', async () => {
  const tokens = path.join(stateDir, 'tokens');
  fs.writeFileSync(tokens, 'dashboard-read-token-0123456789 read\n');
  const secured = await startGradlabd(['--state_dir=', `--auth_tokens_file=${tokens}`]);
  try {
    const context = await browser.newContext();
    const page = await newPage(context);
    await page.goto(`http://127.0.0.1:${secured.http}/#/`);
    const form = page.locator('[data-role=token-form]');
    await form.waitFor();
    await form.locator('input').fill('not-the-token-0123456789');
    await form.locator('button').click();
    await waitFor('the unknown token refused', async () =>
      /not known/.test(await page.locator('[data-role=token-form]').innerText()));
    await page.locator('[data-role=token-form] input').fill('dashboard-read-token-0123456789');
    await page.locator('[data-role=token-form] button').click();
    await page.locator('[data-role=experiment-list]').waitFor();
    // The live list (an EventSource with ?access_token=) is connected.
    await waitFor('the live connection', async () =>
      (await page.locator('#connection').getAttribute('class')) === 'connection live');
    assert.deepEqual(page.errors, []);
    await context.close();
  } finally {
    await stopGradlabd(secured.child);
  }
});
