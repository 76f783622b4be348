// gradlab's charts, shared by the live dashboard (dashboard.js) and reports (report.js):
// learning curves and overlays with uPlot, the gradient-flow heatmap on a canvas.
// Data is the HTTP API's JSON (the protobuf JSON mapping: lowerCamelCase names, int64
// values as strings, enums by name).
(function (global) {
  'use strict';

  const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2',
    '#4d7c0f', '#db2777', '#78716c', '#0f766e'];
  // ln 10: the cross-entropy of a uniform guess over the 10 classes of every dataset
  // gradlab trains on (cifar10, fashion_mnist, mnist).
  const CHANCE_LOSS = Math.log(10);
  const CHANCE_ACCURACY = 10;

  const num = (v) => (v === undefined || v === null ? 0 : Number(v));

  // spec.model for people: an uploaded model's id (a sha256) cut to its first 12 digits.
  const UPLOADED = 'uploaded:';
  function modelLabel(model) {
    if (!model || !model.startsWith(UPLOADED) || model.length <= UPLOADED.length + 12) {
      return model || '';
    }
    return `${model.slice(0, UPLOADED.length + 12)}…`;
  }

  // ", ×0.1 at iterations 782, 1173, warm-up 400 steps at 0.01, preset he2016", or ''.
  function scheduleText(spec) {
    const parts = [];
    if (num(spec.lrStepSize) > 0) parts.push(`StepLR(${spec.lrStepSize}, ${spec.lrGamma})`);
    const milestones = spec.lrMilestones || [];
    if (milestones.length) {
      parts.push(`×${spec.lrGamma} at ${spec.lrMilestoneUnit || 'epochs'} ${milestones.join(', ')}`);
    }
    if (num(spec.warmupIterations) > 0) {
      parts.push(`warm-up ${spec.warmupIterations} steps at ${spec.warmupLearningRate}`);
    }
    if (spec.preset) parts.push(`preset ${spec.preset}`);
    return parts.map((part) => `, ${part}`).join('');
  }

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (key === 'class') node.className = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  function percent(fraction, digits = 1) {
    return (100 * fraction).toFixed(digits) + '%';
  }

  function exponential(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    if (v === 0) return '0';
    return v.toExponential(2);
  }

  // Everything known of one experiment, built from its events in order.
  class ExperimentData {
    constructor(experiment) {
      this.experiment = experiment || null;
      this.epochs = new Map();  // epoch -> EpochMetrics
      this.progress = [];       // BatchProgress, along the run
      this.snapshots = [];      // GradientSnapshot, by step
      this.predictions = new Map();  // epoch (0: initialisation) -> its newest Predictions
      this.version = 0;         // changes with every event, for redraws
    }

    setExperiment(experiment) {
      this.experiment = experiment;
      this.version++;
    }

    addMetrics(event) {
      if (event.epochMetrics) {
        this.epochs.set(num(event.epochMetrics.epoch), event.epochMetrics);
      } else if (event.predictions) {
        this.predictions.set(num(event.predictions.epoch), event.predictions);
      } else if (event.batchProgress) {
        const p = event.batchProgress;
        const x = progressX(p);
        // A run resumed from a checkpoint repeats batches: keep the newest pass only.
        while (this.progress.length && progressX(this.progress[this.progress.length - 1]) >= x) {
          this.progress.pop();
        }
        this.progress.push(p);
      }
      this.version++;
    }

    addSnapshot(snapshot) {
      const step = num(snapshot.step);
      let i = this.snapshots.length;
      while (i > 0 && num(this.snapshots[i - 1].step) > step) i--;
      if (i > 0 && num(this.snapshots[i - 1].step) === step) this.snapshots[i - 1] = snapshot;
      else this.snapshots.splice(i, 0, snapshot);
      this.version++;
    }

    epochList() {
      return [...this.epochs.values()].sort((a, b) => num(a.epoch) - num(b.epoch));
    }

    predictionList() {
      return [...this.predictions.values()].sort((a, b) => num(a.epoch) - num(b.epoch));
    }

    label() {
      const e = this.experiment;
      if (!e) return '';
      const spec = e.spec || {};
      return e.name ? `${e.name} (${e.id})` :
                      `${modelLabel(spec.model)} · ${spec.dataset} (${e.id})`;
    }
  }

  // Where a batch sits on the epoch axis: epoch 2, batch 50 of 100 is 1.5.
  function progressX(p) {
    return num(p.epoch) - 1 + num(p.batch) / Math.max(1, num(p.batches));
  }

  // uPlot wants one x array and aligned y arrays: merges [x, y] point lists.
  function align(pointLists) {
    const xs = [...new Set(pointLists.flatMap((points) => points.map((p) => p[0])))]
      .sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    return [xs, ...pointLists.map((points) => {
      const ys = new Array(xs.length).fill(null);
      for (const [x, y] of points) ys[index.get(x)] = y;
      return ys;
    })];
  }

  // A uPlot line chart that sizes itself to its element.
  class LineChart {
    constructor(container, options) {
      this.container = container;
      this.options = options;
      this.plot = null;
      this.data = null;
    }

    setData(data) {
      this.data = data;
      if (!this.plot) {
        this.plot = new uPlot(this.uplotOptions(), data, this.container);
      } else {
        this.plot.setData(data);
      }
    }

    uplotOptions() {
      const o = this.options;
      return {
        width: Math.max(200, this.container.clientWidth),
        height: o.height || 180,
        scales: {
          x: Object.assign({time: false}, o.xRange ? {range: o.xRange} : {}),
          y: Object.assign({}, o.yLog ? {distr: 3} : {}, o.yRange ? {range: o.yRange} : {}),
        },
        axes: [
          Object.assign(
              {label: o.xLabel, size: 40, values: o.xValues},
              o.xIncrements ? {incrs: o.xIncrements, space: 110} : {},
              o.xSplits ? {splits: o.xSplits} : {}),
          {label: o.yLabel, size: 56, values: o.yValues},
        ],
        series: [{label: o.xLabel, value: o.xLegend}].concat(
            o.series.map((s) => ({
                           label: s.label,
                           stroke: s.color,
                           width: s.width || 2,
                           dash: s.dash,
                           spanGaps: true,
                           points: {show: s.points !== false, size: 5},
                           paths: s.paths,
                           fill: s.fill,
                           value: o.yLegend,
                         }))),
        bands: o.bands,
        legend: {live: true, show: o.legend !== false},
        cursor: {drag: {x: true, y: false}},
      };
    }

    resize() {
      if (this.plot) {
        this.plot.setSize({ width: Math.max(200, this.container.clientWidth),
          height: this.options.height || 180 });
      }
    }
  }

  // A perceptual colour scale (viridis, sampled), t in [0, 1].
  const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37]];
  function viridis(t) {
    const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
    const f = x - i;
    const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  // More rows than this are labelled by stage (layer1, layer2, ...), not one by one.
  const GROUPED_ROWS = 40;

  // The stage of a parameter or layer name, its first component: "layer2" for
  // "layer2.3.conv1.weight", "conv1" for "conv1.weight".
  function stageOf(name) {
    return name.split('.')[0];
  }

  // Runs of consecutive names in the same stage, input to output:
  // [{ stage, first, last, blocks }], blocks counting the distinct second components
  // that are numbers ("layer2.0", "layer2.1", ...).
  function stageRuns(names) {
    const runs = [];
    names.forEach((name, i) => {
      const stage = stageOf(name);
      let run = runs[runs.length - 1];
      if (!run || run.stage !== stage) {
        run = { stage, first: i, last: i, blockSet: new Set() };
        runs.push(run);
      }
      run.last = i;
      const block = name.split('.')[1];
      if (/^\d+$/.test(block || '')) run.blockSet.add(block);
    });
    return runs.map(({ stage, first, last, blockSet }) =>
      ({ stage, first, last, blocks: blockSet.size }));
  }

  // Where the stages of `runs` start, as axis ticks at least a 12th of the axis apart:
  // of two closer ones the larger stage keeps its tick (layer1's, not conv1's).
  function stageTicks(runs, count) {
    const kept = [];
    for (const run of runs) {
      const previous = kept[kept.length - 1];
      if (previous && run.first - previous.first < count / 12) {
        if (run.last - run.first > previous.last - previous.first) kept[kept.length - 1] = run;
      } else {
        kept.push(run);
      }
    }
    return kept.map((run) => run.first);
  }

  // Each class's share of the predictions as a bar, with its mean softmax output.
  function predictedClassBars(p) {
    const names = p.classNames || [];
    const counts = (p.predictedCounts || []).map(num);
    const samples = Math.max(1, num(p.samples));
    return el('div', { class: 'class-bars', 'data-role': 'predicted-classes',
      'data-epoch': String(num(p.epoch)) },
    ...names.map((name, c) => el('div', { class: 'class-bar' },
      el('span', { class: 'class-name' }, `${c} ${name}`),
      el('span', { class: 'bar' }, el('div', { style: `width:${(100 * counts[c] / samples).toFixed(1)}%` })),
      el('span', { class: 'num' }, `${(100 * counts[c] / samples).toFixed(1)}%`),
      el('span', { class: 'num muted' }, num((p.meanSoftmax || [])[c]).toFixed(4)))));
  }

  // A small histogram of the share of the test images predicted as each class, one bar per
  // class (its name and share in the tooltip), captioned with its epoch and, when one class
  // takes over 90%, with that class. `shares` are fractions; null draws "none".
  function classHistogram(names, shares, epoch, role, colour) {
    if (!shares || !shares.length) {
      return el(
          'div', {class: 'class-histogram muted', 'data-role': role, 'data-epoch': ''}, 'none');
    }
    const top = shares.indexOf(Math.max(...shares));
    return el(
        'div', {
          class: 'class-histogram',
          'data-role': role,
          'data-epoch': String(epoch),
          'data-shares': shares.map((s) => s.toFixed(4)).join(',')
        },
        el('div', {class: 'histogram-bars'},
           ...shares.map(
               (share, c) =>
                   el('span', {title: `${c} ${names[c] || ''}: ${percent(share)}`},
                      el('div',
                         {style: `height:${(100 * share).toFixed(1)}%;background:${colour}`})))),
        el('div', {class: 'muted'},
           (epoch === 0 ? 'epoch 0 (untrained)' : `epoch ${epoch}`) +
               (shares[top] > 0.9 ? ` · ${percent(shares[top])} ${names[top] || top}` : '')));
  }

  // The confusion matrix: true classes (rows) by predicted classes (columns), each cell
  // coloured by its share of the row and labelled with it when there is room.
  class ConfusionMatrix {
    constructor(container) {
      this.container = container;
      this.canvas = el('canvas', { 'data-role': 'confusion', 'data-epoch': '', 'data-cells': '0' });
      this.tooltip = el('div', { class: 'tooltip' });
      container.append(this.canvas, this.tooltip);
      this.predictions = null;
      this.canvas.addEventListener('mousemove', (e) => this.hover(e));
      this.canvas.addEventListener('mouseleave', () => { this.tooltip.style.display = 'none'; });
    }

    setData(predictions) {
      this.predictions = predictions;
      this.draw();
    }

    geometry() {
      const classes = (this.predictions && (this.predictions.classNames || []).length) || 10;
      const left = 110;
      const top = 18;
      const width = Math.max(260, this.container.clientWidth);
      const cell = Math.max(12, Math.min(36, Math.floor((width - left - 8) / classes)));
      return { classes, left, top, cell, width, height: top + classes * cell + 22 };
    }

    // Row percentages, [true][predicted].
    shares() {
      const p = this.predictions;
      const n = (p.classNames || []).length;
      const confusion = (p.confusion || []).map(num);
      const rows = [];
      for (let t = 0; t < n; t++) {
        const row = confusion.slice(t * n, (t + 1) * n);
        const total = row.reduce((a, b) => a + b, 0);
        rows.push(row.map((count) => (total ? count / total : 0)));
      }
      return rows;
    }

    draw() {
      const g = this.geometry();
      const ratio = global.devicePixelRatio || 1;
      const canvas = this.canvas;
      canvas.width = Math.round(g.width * ratio);
      canvas.height = Math.round(g.height * ratio);
      canvas.style.height = g.height + 'px';
      const ctx = canvas.getContext('2d');
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, g.width, g.height);
      ctx.font = '11px system-ui, sans-serif';
      const p = this.predictions;
      if (!p) {
        canvas.dataset.epoch = '';
        canvas.dataset.cells = '0';
        ctx.fillStyle = '#677084';
        ctx.fillText('No predictions yet', g.left, g.top + 14);
        return;
      }
      const names = p.classNames || [];
      const shares = this.shares();
      let inked = 0;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      shares.forEach((row, t) => row.forEach((share, c) => {
        const x = g.left + c * g.cell;
        const y = g.top + t * g.cell;
        ctx.fillStyle = share > 0 ? viridis(share) : '#f3f4f6';
        ctx.fillRect(x, y, g.cell - 1, g.cell - 1);
        if (share > 0) inked++;
        if (share > 0 && g.cell >= 26) {
          ctx.fillStyle = share > 0.6 ? '#1d2330' : '#fff';
          ctx.fillText(Math.round(100 * share), x + g.cell / 2, y + g.cell / 2);
        }
      }));
      canvas.dataset.epoch = String(num(p.epoch));
      canvas.dataset.cells = String(inked);
      ctx.fillStyle = '#1d2330';
      ctx.textAlign = 'right';
      names.forEach((name, t) => {
        ctx.fillText(`${name.length > 14 ? name.slice(0, 13) + '…' : name} ${t}`, g.left - 6,
          g.top + (t + 0.5) * g.cell);
      });
      ctx.textAlign = 'center';
      names.forEach((_, c) => ctx.fillText(String(c), g.left + (c + 0.5) * g.cell, g.top - 8));
      ctx.fillStyle = '#677084';
      ctx.fillText('predicted class (columns), % of each true class (rows)',
        g.left + (names.length * g.cell) / 2, g.top + names.length * g.cell + 11);
      this.geometryCache = g;
    }

    hover(event) {
      const g = this.geometryCache;
      const p = this.predictions;
      if (!g || !p) return;
      const rect = this.canvas.getBoundingClientRect();
      const c = Math.floor((event.clientX - rect.left - g.left) / g.cell);
      const t = Math.floor((event.clientY - rect.top - g.top) / g.cell);
      const names = p.classNames || [];
      if (c < 0 || t < 0 || c >= names.length || t >= names.length) {
        this.tooltip.style.display = 'none';
        return;
      }
      const count = num((p.confusion || [])[t * names.length + c]);
      this.tooltip.textContent = `true ${names[t]}, predicted ${names[c]}: ${count} images ` +
        `(${(100 * this.shares()[t][c]).toFixed(1)}% of ${names[t]})`;
      this.tooltip.style.display = 'block';
      this.tooltip.style.left = Math.min(event.clientX - rect.left + 12, this.container.clientWidth - 260) + 'px';
      this.tooltip.style.top = (event.clientY - rect.top + 12) + 'px';
    }
  }

  // Layers (rows) by snapshots (columns), coloured by log10 of the value. Deep networks'
  // rows are labelled by stage, with a line between stages.
  class Heatmap {
    constructor(container, onSelect) {
      this.container = container;
      this.onSelect = onSelect;
      this.canvas = el('canvas', { 'data-role': 'heatmap', 'data-columns': '0', 'data-rows': '0' });
      this.tooltip = el('div', { class: 'tooltip' });
      container.append(this.canvas, this.tooltip);
      this.model = { rows: [], columns: [], value: () => null, selected: -1 };
      this.canvas.addEventListener('mousemove', (e) => this.hover(e));
      this.canvas.addEventListener('mouseleave', () => { this.tooltip.style.display = 'none'; });
      this.canvas.addEventListener('click', (e) => {
        const hit = this.hit(e);
        if (hit && this.onSelect) this.onSelect(hit.column);
      });
    }

    // rows: names; columns: {step, epoch, batch}; value(row, column): number or null.
    setData(model) {
      this.model = model;
      this.draw();
    }

    geometry() {
      const rows = this.model.rows.length;
      const width = Math.max(300, this.container.clientWidth);
      const rowHeight = rows > GROUPED_ROWS
        ? Math.max(2, Math.floor(460 / rows))
        : Math.max(4, Math.min(14, Math.floor(230 / Math.max(1, rows))));
      const left = 150;
      const right = 78;
      const top = 4;
      const axis = 30;
      return { width, height: top + rows * rowHeight + axis, left, right, top, rowHeight,
        plotWidth: width - left - right };
    }

    draw() {
      const { rows, columns, value, selected } = this.model;
      const g = this.geometry();
      const ratio = global.devicePixelRatio || 1;
      const canvas = this.canvas;
      canvas.width = Math.round(g.width * ratio);
      canvas.height = Math.round(g.height * ratio);
      canvas.style.height = g.height + 'px';
      canvas.dataset.columns = String(columns.length);
      canvas.dataset.rows = String(rows.length);
      const ctx = canvas.getContext('2d');
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, g.width, g.height);
      ctx.font = '11px system-ui, sans-serif';
      if (!rows.length || !columns.length) {
        ctx.fillStyle = '#677084';
        ctx.fillText('No gradient snapshots yet', g.left, g.top + 14);
        return;
      }
      // The colour range: log10 over every positive value shown.
      let lo = Infinity;
      let hi = -Infinity;
      for (let c = 0; c < columns.length; c++) {
        for (let r = 0; r < rows.length; r++) {
          const v = value(r, c);
          if (v > 0) {
            const l = Math.log10(v);
            if (l < lo) lo = l;
            if (l > hi) hi = l;
          }
        }
      }
      if (!isFinite(lo)) { lo = -1; hi = 0; }
      if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
      const columnWidth = g.plotWidth / columns.length;
      for (let c = 0; c < columns.length; c++) {
        const x = g.left + c * columnWidth;
        for (let r = 0; r < rows.length; r++) {
          const v = value(r, c);
          if (v === null || v === undefined) continue;
          ctx.fillStyle = v > 0 ? viridis((Math.log10(v) - lo) / (hi - lo)) : '#000';
          ctx.fillRect(x, g.top + r * g.rowHeight, Math.ceil(columnWidth) + 0.5, g.rowHeight);
        }
      }
      if (selected >= 0 && selected < columns.length) {
        ctx.strokeStyle = '#ef4444';
        ctx.lineWidth = 2;
        ctx.strokeRect(g.left + selected * columnWidth, g.top - 1,
          Math.max(2, columnWidth), rows.length * g.rowHeight + 2);
      }
      ctx.fillStyle = '#1d2330';
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      if (rows.length > GROUPED_ROWS) {
        this.drawStages(ctx, g, rows);
      } else {
        // Layer names, as many as fit.
        this.canvas.dataset.stages = '';
        const every = Math.ceil(11 / g.rowHeight);
        for (let r = 0; r < rows.length; r += every) {
          let name = rows[r];
          if (name.length > 24) name = '…' + name.slice(-23);
          ctx.fillText(name, g.left - 6, g.top + (r + 0.5) * g.rowHeight);
        }
      }
      // Steps along the bottom.
      const bottom = g.top + rows.length * g.rowHeight;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'top';
      const ticks = Math.min(columns.length, Math.max(2, Math.floor(g.plotWidth / 90)));
      for (let t = 0; t < ticks; t++) {
        const c = Math.round(t * (columns.length - 1) / Math.max(1, ticks - 1));
        const x = g.left + (c + 0.5) * columnWidth;
        ctx.fillRect(x, bottom, 1, 4);
        ctx.fillText(String(num(columns[c].step)), x, bottom + 5);
      }
      ctx.fillStyle = '#677084';
      ctx.fillText('optimizer step (one column per snapshot)', g.left + g.plotWidth / 2, bottom + 17);
      // The colour bar: powers of ten.
      const barX = g.width - g.right + 12;
      const barHeight = rows.length * g.rowHeight;
      for (let y = 0; y < barHeight; y++) {
        ctx.fillStyle = viridis(1 - y / Math.max(1, barHeight - 1));
        ctx.fillRect(barX, g.top + y, 12, 1);
      }
      ctx.fillStyle = '#1d2330';
      ctx.textAlign = 'left';
      ctx.textBaseline = 'middle';
      ctx.fillText(exponential(10 ** hi), barX + 16, g.top + 5);
      ctx.fillText(exponential(10 ** lo), barX + 16, g.top + barHeight - 5);
      this.geometryCache = g;
    }

    // Each stage's name and block count beside a bracket over its rows, and a white line
    // across the map where a stage ends.
    drawStages(ctx, g, rows) {
      const runs = stageRuns(rows);
      this.canvas.dataset.stages = runs.map((run) => run.stage).join(',');
      for (const run of runs) {
        const y0 = g.top + run.first * g.rowHeight;
        const y1 = g.top + (run.last + 1) * g.rowHeight;
        ctx.fillStyle = '#9ca3af';
        ctx.fillRect(g.left - 4, y0 + 1, 2, Math.max(1, y1 - y0 - 2));
        ctx.fillStyle = '#1d2330';
        const label = run.blocks > 0 ? `${run.stage} (${run.blocks} blocks)` : run.stage;
        ctx.fillText(label, g.left - 8, (y0 + y1) / 2);
        if (run.last < rows.length - 1) {
          ctx.fillStyle = '#fff';
          ctx.fillRect(g.left, y1 - 0.5, g.plotWidth, 1);
        }
      }
    }

    hit(event) {
      const g = this.geometryCache;
      if (!g) return null;
      const rect = this.canvas.getBoundingClientRect();
      const x = event.clientX - rect.left;
      const y = event.clientY - rect.top;
      const column = Math.floor((x - g.left) / (g.plotWidth / this.model.columns.length));
      const row = Math.floor((y - g.top) / g.rowHeight);
      if (column < 0 || column >= this.model.columns.length || row < 0 ||
          row >= this.model.rows.length) return null;
      return { column, row, x, y };
    }

    hover(event) {
      const hit = this.hit(event);
      if (!hit) {
        this.tooltip.style.display = 'none';
        return;
      }
      const column = this.model.columns[hit.column];
      this.tooltip.textContent = `${this.model.rows[hit.row]} · step ${num(column.step)} ` +
        `(epoch ${column.epoch}, batch ${column.batch}): ` +
        exponential(this.model.value(hit.row, hit.column));
      this.tooltip.style.display = 'block';
      this.tooltip.style.left = Math.min(hit.x + 12, this.container.clientWidth - 260) + 'px';
      this.tooltip.style.top = (hit.y + 12) + 'px';
    }
  }

  // What the heatmap and the bars show of a snapshot.
  const MEASURES = {
    gradNorm: { label: 'gradient norm', list: 'layers', field: 'gradNorm' },
    ratio: { label: 'gradient / weight norm', list: 'layers', field: 'ratio' },
    activationStd: { label: 'activation std', list: 'activations', field: 'std' },
  };

  // The weights of the conv and linear layers (not biases nor BatchNorm's scales), in
  // forward order: the snapshot lists those layers as its activations.
  function layerWeights(snapshot) {
    const names = new Set((snapshot.layers || []).map((l) => l.name));
    return (snapshot.activations || []).map((a) => a.name + '.weight').filter((n) => names.has(n));
  }

  // The rows a measure has in `snapshot`: parameter names (in state_dict order, or only
  // the layers' weights) or, for activations, layer names.
  function measureRows(snapshot, measure, weightsOnly) {
    if (!snapshot) return [];
    if (measure !== 'activationStd' && weightsOnly) return layerWeights(snapshot);
    return (snapshot[MEASURES[measure].list] || []).map((entry) => entry.name);
  }

  function measureValues(snapshot, measure) {
    const values = new Map();
    const m = MEASURES[measure];
    for (const entry of snapshot[m.list] || []) values.set(entry.name, num(entry[m.field]));
    return values;
  }

  // One experiment: summary, learning curves, gradient flow. `live` adds progress bars.
  class ExperimentView {
    constructor(container, data, options = {}) {
      this.data = data;
      this.live = !!options.live;
      this.measure = 'gradNorm';
      this.weightsOnly = true;
      this.selected = -1;  // snapshot index; -1 follows the latest
      this.drawnVersion = -1;
      this.build(container);
    }

    build(container) {
      this.summary = el('div', { class: 'panel summary' });
      this.lossChart = el('div', { class: 'chart', 'data-role': 'loss-chart' });
      this.accuracyChart = el('div', { class: 'chart', 'data-role': 'accuracy-chart' });
      const heatmapWrap = el('div', { class: 'heatmap-wrap' });
      this.barsChart = el('div', { class: 'chart', 'data-role': 'bars-chart' });
      this.snapshotLabel = el('span', { class: 'snapshot-label muted' });
      this.slider = el('input', { type: 'range', min: '0', max: '0', value: '0',
        'aria-label': 'snapshot', oninput: () => this.select(Number(this.slider.value)) });
      const measureSelect = el('select', { 'aria-label': 'measure',
        onchange: (e) => { this.measure = e.target.value; this.redraw(true); } },
      ...Object.entries(MEASURES).map(([key, m]) => el('option', { value: key }, m.label)));
      const weightsOnly = el('input', { type: 'checkbox', checked: '',
        onchange: (e) => { this.weightsOnly = e.target.checked; this.redraw(true); } });
      this.predictionEpoch = -1;  // -1 follows the latest
      this.predictionSlider = el('input', { type: 'range', min: '0', max: '0', value: '0',
        'aria-label': 'predictions epoch', 'data-role': 'predictions-slider',
        oninput: () => { this.predictionEpoch = Number(this.predictionSlider.value); this.redraw(true); } });
      this.predictionLabel = el('span', { class: 'snapshot-label muted' });
      const confusionWrap = el('div', { class: 'heatmap-wrap' });
      this.classBars = el('div', {});
      this.root = el('section', { class: 'experiment' },
        this.summary,
        el('div', { class: 'grid' },
          el('div', { class: 'panel' }, el('h2', {}, 'Loss'), this.lossChart),
          el('div', { class: 'panel' }, el('h2', {}, 'Accuracy'), this.accuracyChart),
          el('div', { class: 'panel' },
            el('div', { class: 'toolbar' }, el('h2', {}, 'Gradient flow'), measureSelect,
              el('label', {}, weightsOnly, ' layer weights only'),
              el('span', { class: 'muted' }, 'log colour; click a column')),
            heatmapWrap),
          el('div', { class: 'panel' },
            el('div', { class: 'toolbar' }, el('h2', {}, 'Per layer'),
              el('button', { 'data-role': 'step-1', onclick: () => this.select(0) }, 'Step 1'),
              el('button', { onclick: () => this.select(-1) }, 'Latest'),
              this.slider, this.snapshotLabel),
            this.barsChart),
          el('div', { class: 'panel' },
            el('div', { class: 'toolbar' }, el('h2', {}, 'What it predicts'),
              this.predictionSlider, this.predictionLabel),
            confusionWrap),
          el('div', { class: 'panel' },
            el('div', { class: 'toolbar' }, el('h2', {}, 'Predicted classes'),
              el('span', { class: 'muted' }, 'share of the test images · mean softmax')),
            this.classBars)));
      container.append(this.root);
      this.heatmap = new Heatmap(heatmapWrap, (column) => this.select(column));
      this.confusion = new ConfusionMatrix(confusionWrap);
      this.loss = new LineChart(this.lossChart, {
        xLabel: 'epoch', yLabel: 'loss', xLegend: (u, v) => (v == null ? '' : v.toFixed(2)),
        series: [
          { label: 'train', color: PALETTE[0] },
          { label: 'test', color: PALETTE[1] },
          { label: 'train, per batch', color: '#93c5fd', width: 1, points: false },
          { label: 'chance (ln 10)', color: '#9ca3af', width: 1, dash: [4, 4], points: false },
        ] });
      this.accuracy = new LineChart(this.accuracyChart, {
        xLabel: 'epoch', yLabel: 'accuracy (%)', yRange: [0, 100],
        xLegend: (u, v) => (v == null ? '' : v.toFixed(2)),
        series: [
          { label: 'train', color: PALETTE[0] },
          { label: 'test', color: PALETTE[1] },
          { label: 'train, per batch', color: '#93c5fd', width: 1, points: false },
          { label: 'chance (10%)', color: '#9ca3af', width: 1, dash: [4, 4], points: false },
        ] });
      this.bars = null;
    }

    // Snapshot `index` (0 is step 1), or -1 to follow the latest.
    select(index) {
      this.selected = index;
      this.redraw(true);
    }

    // Draws again if the data changed since the last drawing (or `force`).
    redraw(force) {
      if (!force && this.drawnVersion === this.data.version) return;
      this.drawnVersion = this.data.version;
      this.drawSummary();
      this.drawCurves();
      this.drawGradients();
      this.drawPredictions();
    }

    // The slider runs over the epochs that have predictions (0: initialisation).
    drawPredictions() {
      const list = this.data.predictionList();
      const index = this.predictionEpoch < 0 ? list.length - 1
        : Math.min(this.predictionEpoch, list.length - 1);
      this.predictionSlider.max = String(Math.max(0, list.length - 1));
      this.predictionSlider.value = String(Math.max(0, index));
      const p = list[index];
      this.confusion.setData(p || null);
      if (!p) {
        this.predictionLabel.textContent = 'none yet';
        this.classBars.replaceChildren();
        return;
      }
      const counts = (p.predictedCounts || []).map(num);
      const top = counts.indexOf(Math.max(...counts));
      const share = counts[top] / Math.max(1, num(p.samples));
      this.predictionLabel.textContent =
        (num(p.epoch) === 0 ? 'at initialisation (epoch 0)' : `epoch ${num(p.epoch)}`) +
        (this.predictionEpoch < 0 ? ' (latest)' : '') +
        (share > 0.9 ? ` · predicts ${(p.classNames || [])[top]} for ${(100 * share).toFixed(1)}% of images` : '');
      this.classBars.replaceChildren(predictedClassBars(p));
    }

    resize() {
      this.loss.resize();
      this.accuracy.resize();
      if (this.bars) this.bars.resize();
      this.heatmap.draw();
      this.confusion.draw();
    }

    drawSummary() {
      const e = this.data.experiment;
      if (!e) return;
      const spec = e.spec || {};
      const epochs = this.data.epochList();
      const last = epochs[epochs.length - 1];
      const progress = this.data.progress[this.data.progress.length - 1];
      const resnet = spec.model === 'resnet' || spec.model === 'cifar_resnet';
      const rows = [
        ['model', `${spec.model}${spec.depth ? `-${spec.depth}` : ''}` +
          `${spec.batchNorm ? ' + BatchNorm' : ''}` +
          (resnet && !spec.skipConnections ? ' (no skips)' : '')],
        ['dataset', spec.dataset],
        ['epochs', `${num(e.currentEpoch)} / ${num(spec.epochs)}`],
        ['optimizer', `SGD lr ${spec.learningRate}, momentum ${spec.momentum}` +
          (num(spec.weightDecay) ? `, weight decay ${spec.weightDecay}` : '') + scheduleText(spec)],
        ['batch', `${spec.batchSize}, seed ${spec.seed}, ${spec.precision || 'fp32'}`],
        ['init', spec.init || 'pytorch_default'],
        ['best test acc', last ? `${percent(num(e.bestTestAccuracy))} (epoch ${e.bestEpoch})` : '–'],
        ['last train loss', last ? num(last.trainLoss).toFixed(4) : '–'],
        ['speed', last ? `${num(last.imagesPerSecond).toFixed(0)} images/s` : '–'],
      ];
      const title =
          el('div', {}, el('h1', {}, e.name || `${modelLabel(spec.model)} on ${spec.dataset}`),
             el('div', {}, el('span', {class: `state ${e.state}`}, e.state), ' ',
                el('span', {class: 'muted'}, e.id)),
             e.error ? el('div', {class: 'error-box'}, e.error) : null);
      const bars = [];
      if (this.live && e.state === 'RUNNING') {
        const done = Math.max(0, num(e.currentEpoch) - 1) / Math.max(1, num(spec.epochs));
        bars.push(el('div', {}, `epoch ${num(e.currentEpoch)} of ${num(spec.epochs)}`,
          el('div', { class: 'bar' }, el('div', { style: `width:${(100 * done).toFixed(1)}%` }))));
        if (progress && num(progress.epoch) === num(e.currentEpoch)) {
          bars.push(el('div', { 'data-role': 'batch-progress' },
            `batch ${progress.batch} of ${progress.batches} · ` +
            `${num(progress.imagesPerSecond).toFixed(0)} images/s · ` +
            `running loss ${num(progress.runningLoss).toFixed(4)}`,
            el('div', { class: 'bar batch' }, el('div', {
              style: `width:${(100 * num(progress.batch) / Math.max(1, num(progress.batches))).toFixed(1)}%` }))));
        }
      }
      const facts = el('div', { class: 'facts' }, ...rows.map(([k, v]) =>
        el('span', {}, el('span', { class: 'muted' }, k + ' '), v)));
      this.summary.replaceChildren(title, el('div', { class: 'facts-wrap' }, facts, ...bars));
    }

    drawCurves() {
      const epochs = this.data.epochList();
      const x = (m) => num(m.epoch);
      const batches = this.data.progress;
      const xs = epochs.map(x).concat(batches.map(progressX));
      const chanceXs = xs.length ? [0, Math.max(...xs)] : [];
      this.loss.setData(align([
        epochs.map((m) => [x(m), num(m.trainLoss)]),
        epochs.map((m) => [x(m), num(m.testLoss)]),
        batches.map((p) => [progressX(p), num(p.runningLoss)]),
        chanceXs.map((cx) => [cx, CHANCE_LOSS]),
      ]));
      this.accuracy.setData(align([
        epochs.map((m) => [x(m), 100 * num(m.trainAccuracy)]),
        epochs.map((m) => [x(m), 100 * num(m.testAccuracy)]),
        batches.map((p) => [progressX(p), 100 * num(p.runningAccuracy)]),
        chanceXs.map((cx) => [cx, CHANCE_ACCURACY]),
      ]));
      this.lossChart.dataset.epochPoints = String(epochs.length);
      this.lossChart.dataset.batchPoints = String(batches.length);
    }

    drawGradients() {
      const snapshots = this.data.snapshots;
      const last = snapshots[snapshots.length - 1];
      const rows = measureRows(last, this.measure, this.weightsOnly);
      const values = snapshots.map((s) => measureValues(s, this.measure));
      const index = this.selected < 0 ? snapshots.length - 1 : Math.min(this.selected, snapshots.length - 1);
      // A copy: the live list grows as snapshots arrive, and the heatmap may draw again
      // (a resize, a hover) before this does, with `values` of the snapshots seen here.
      this.heatmap.setData({
        rows,
        columns: snapshots.slice(),
        value: (r, c) => (values[c].has(rows[r]) ? values[c].get(rows[r]) : null),
        selected: index,
      });
      this.slider.max = String(Math.max(0, snapshots.length - 1));
      this.slider.value = String(Math.max(0, index));
      const snapshot = snapshots[index];
      this.snapshotLabel.textContent = snapshot
        ? `step ${num(snapshot.step)} · epoch ${snapshot.epoch}, batch ${snapshot.batch}` +
          (this.selected < 0 ? ' (latest)' : '')
        : 'no snapshot yet';
      this.barsChart.dataset.step = snapshot ? String(num(snapshot.step)) : '';
      if (!snapshot) return;
      const shown = measureValues(snapshot, this.measure);
      const names = rows;
      const ys = names.map((name) => (shown.get(name) > 0 ? shown.get(name) : null));
      const key = this.measure + '|' + names.join(',');
      if (!this.bars || this.barsKey !== key) {
        this.barsChart.replaceChildren();
        // A deep network's axis marks where each stage starts, input to output.
        const runs = names.length > GROUPED_ROWS ? stageRuns(names) : null;
        this.barsChart.dataset.stages = runs ? runs.map((run) => run.stage).join(',') : '';
        this.bars = new LineChart(this.barsChart, {
          xLabel: runs ? 'layer, input to output (ticks: where each stage starts)' : 'layer',
          yLabel: MEASURES[this.measure].label, yLog: true, height: 220,
          xRange: [-0.5, names.length - 0.5],
          // Whole layers only, far enough apart for their names; the legend names any.
          xIncrements: [1, 2, 3, 4, 5, 10, 20, 50, 100],
          xSplits: runs ? () => stageTicks(runs, names.length) : undefined,
          xValues: (u, splits) => splits.map((i) => {
            if (!Number.isInteger(i) || !names[i]) return '';
            return runs ? stageOf(names[i]) : shortName(names[i]);
          }),
          xLegend: (u, i) => (i == null ? '' : names[i] || ''),
          yLegend: (u, v) => exponential(v),
          yValues: (u, splits) => splits.map((v) => (v == null ? '' : v.toExponential(0))),
          series: [{ label: MEASURES[this.measure].label, color: PALETTE[0], width: 1, points: false,
            fill: 'rgba(37, 99, 235, 0.55)', paths: uPlot.paths.bars({ size: [0.8, 40] }) }],
        });
        this.barsKey = key;
      }
      this.bars.setData([names.map((_, i) => i), ys]);
    }
  }

  // "layer2.0.conv1.weight" -> "layer2.0.conv1"
  function shortName(name) {
    return name.replace(/\.(weight|bias)$/, '');
  }

  // A row per run or cell: its label, then its predicted-class histograms at
  // initialisation and after the last epoch, side by side.
  function predictedClassesTable(rows) {
    return el(
        'table', {class: 'experiments predicted'},
        el('tr', {}, el('th', {}, ''), el('th', {}, 'untrained (epoch 0)'),
           el('th', {}, 'after the last epoch')),
        ...rows.map(
            (r) =>
                el('tr', {'data-key': r.key},
                   el('td', {}, el('span', {style: `color:${r.colour}`}, '\u25A0 '), r.label),
                   el('td', {},
                      classHistogram(
                          r.names, r.initial, r.initialEpoch, 'predicted-initial', r.colour)),
                   el('td', {},
                      classHistogram(r.names, r.last, r.lastEpoch, 'predicted-final', r.colour)))));
  }

  // Several experiments overlaid: the reference experiment's picture.
  class CompareView {
    constructor(container, datas) {
      this.datas = datas;
      this.drawnVersion = '';
      this.table = el('div', { class: 'panel' });
      this.accuracyChart = el('div', { class: 'chart', 'data-role': 'compare-accuracy' });
      this.lossChart = el('div', { class: 'chart', 'data-role': 'compare-loss' });
      this.flowChart = el('div', { class: 'chart', 'data-role': 'compare-flow' });
      this.predictedTable = el('div', {'data-role': 'compare-predicted'});
      container.append(el(
          'section', {class: 'compare'}, this.table,
          el('div', {class: 'grid'},
             el('div', {class: 'panel'}, el('h2', {}, 'Test accuracy per epoch'),
                this.accuracyChart),
             el('div', {class: 'panel'}, el('h2', {}, 'Training loss per epoch'), this.lossChart),
             el('div', {class: 'panel', style: 'grid-column: 1 / span 2'},
                el('h2', {},
                   'Gradient norm of each layer\'s weights at step 1, input to output ' +
                       '(the untrained network: where the gradient vanishes)'),
                this.flowChart),
             el('div', {class: 'panel', style: 'grid-column: 1 / span 2'},
                el('h2', {},
                   'Predicted classes: share of the test images, untrained and after ' +
                       'the last epoch'),
                this.predictedTable))));
      const series = (datas) => datas.map((d, i) => ({ label: d.label(), color: PALETTE[i % PALETTE.length] }));
      const epochLegend = (u, v) => (v == null ? '' : String(v));
      this.accuracy = new LineChart(this.accuracyChart, { xLabel: 'epoch', yLabel: 'test accuracy (%)',
        yRange: [0, 100], xLegend: epochLegend, series: series(datas) });
      this.loss = new LineChart(this.lossChart, { xLabel: 'epoch', yLabel: 'train loss',
        xLegend: epochLegend, series: series(datas) });
      this.flow = new LineChart(this.flowChart, { xLabel: 'depth (0 = input, 1 = output)',
        yLabel: 'gradient norm', yLog: true, height: 260,
        xLegend: (u, v) => (v == null ? '' : v.toFixed(2)), yLegend: (u, v) => exponential(v),
        yValues: (u, splits) => splits.map((v) => (v == null ? '' : v.toExponential(0))),
        series: series(datas) });
    }

    redraw() {
      const version = this.datas.map((d) => d.version).join(',');
      if (version === this.drawnVersion) return;
      this.drawnVersion = version;
      const header = ['experiment', 'model', 'dataset', 'state', 'epochs', 'best test acc',
        'last train loss', 'step-1 grad norm, first / last weight'];
      const rows = this.datas.map((d, i) => {
        const e = d.experiment || { spec: {} };
        const epochs = d.epochList();
        const last = epochs[epochs.length - 1];
        const flow = stepOneFlow(d);
        return el(
            'tr', {},
            el('td', {}, el('span', {style: `color:${PALETTE[i % PALETTE.length]}`}, '\u25A0 '),
               el('a', {href: `#/experiments/${e.id}`}, e.name || e.id)),
            el('td', {}, modelLabel(e.spec.model)), el('td', {}, e.spec.dataset),
            el('td', {}, el('span', {class: `state ${e.state}`}, e.state)),
            el('td', {class: 'num'}, `${num(e.currentEpoch)} / ${num(e.spec.epochs)}`),
            el('td', {class: 'num'}, last ? percent(num(e.bestTestAccuracy)) : '–'),
            el('td', {class: 'num'}, last ? num(last.trainLoss).toFixed(4) : '–'),
            el('td', {class: 'num'},
               flow.length ?
                   `${exponential(flow[0][1])} / ${exponential(flow[flow.length - 1][1])}` :
                   '–'));
      });
      this.table.replaceChildren(el('table', { class: 'experiments' },
        el('tr', {}, ...header.map((h) => el('th', {}, h))), ...rows));
      this.accuracy.setData(align(this.datas.map((d) =>
        d.epochList().map((m) => [num(m.epoch), 100 * num(m.testAccuracy)]))));
      this.loss.setData(align(this.datas.map((d) =>
        d.epochList().map((m) => [num(m.epoch), num(m.trainLoss)]))));
      this.flow.setData(align(this.datas.map(stepOneFlow)));
      this.flowChart.dataset.series = String(this.datas.filter((d) => stepOneFlow(d).length).length);
      this.predictedTable.replaceChildren(predictedClassesTable(this.datas.map((d, i) => {
        const list = d.predictionList();
        const initial = list.find((p) => num(p.epoch) === 0);
        const last =
            list.length && num(list[list.length - 1].epoch) > 0 ? list[list.length - 1] : null;
        const shares = (p) =>
            p && (p.predictedCounts || []).map((c) => num(c) / Math.max(1, num(p.samples)));
        const e = d.experiment || {};
        return {
          label: d.label(),
          colour: PALETTE[i % PALETTE.length],
          names: ((initial || last || {}).classNames) || [],
          initial: shares(initial),
          initialEpoch: 0,
          last: shares(last),
          lastEpoch: last ? num(last.epoch) : 0,
          key: e.id
        };
      })));
    }

    resize() {
      this.accuracy.resize();
      this.loss.resize();
      this.flow.resize();
    }
  }

  // [relative depth, gradient norm] of each layer's weights in the step-1 snapshot.
  function stepOneFlow(data) {
    const first = data.snapshots[0];
    if (!first || num(first.step) !== 1) return [];
    const norms = measureValues(first, 'gradNorm');
    const weights = layerWeights(first);
    return weights.map((name, i) => [weights.length > 1 ? i / (weights.length - 1) : 0,
      norms.get(name) > 0 ? norms.get(name) : null]);
  }

  // "71.2 ± 0.4%" (the spread with two runs or more), "–" over none.
  function percentSpread(spread) {
    if (!spread || !num(spread.count)) return '–';
    const mean = (100 * num(spread.mean)).toFixed(1);
    return num(spread.count) > 1 ? `${mean} ± ${(100 * num(spread.std)).toFixed(1)}%` : `${mean}%`;
  }

  // A colour for an accuracy in [0.1 (chance), best]: red to green, pale enough for text.
  function accuracyColour(fraction, best) {
    const t = best > 0.1 ? Math.min(1, Math.max(0, (fraction - 0.1) / (best - 0.1))) : 0;
    return `hsl(${Math.round(120 * t)}, 70%, 85%)`;
  }

  // A sweep: its grid as a table (mean ± std over each cell's seeds, coloured by
  // accuracy), each cell's curves as a mean line in a min-max band, and every cell's
  // step-1 gradient norms, layer by layer, on one log scale. Fed whole Sweep messages.
  class SweepView {
    constructor(container) {
      this.sweep = null;
      this.header = el('div', {});
      this.table = el('div', {class: 'panel'});
      this.accuracyChart = el('div', {class: 'chart', 'data-role': 'sweep-accuracy'});
      this.lossChart = el('div', {class: 'chart', 'data-role': 'sweep-loss'});
      this.flowChart = el('div', {class: 'chart', 'data-role': 'sweep-flow'});
      this.predictedTable = el('div', {'data-role': 'sweep-predicted'});
      container.append(el(
          'section', {class: 'compare'}, this.header, this.table,
          el('div', {class: 'grid'},
             el('div', {class: 'panel'},
                el('h2', {}, 'Test accuracy per epoch (mean, min–max band)'), this.accuracyChart),
             el('div', {class: 'panel'},
                el('h2', {}, 'Training loss per epoch (mean, min–max band)'), this.lossChart),
             el('div', {class: 'panel', style: 'grid-column: 1 / span 2'},
                el('h2', {},
                   'Mean gradient norm of each layer\'s weights at step 1, input to output, ' +
                       'per cell'),
                this.flowChart),
             el('div', {class: 'panel', style: 'grid-column: 1 / span 2'},
                el('h2', {},
                   'Predicted classes: share of the test images, untrained and after the ' +
                       'last epoch (mean over seeds)'),
                this.predictedTable))));
      this.charts = [];
    }

    // Charts are made for the sweep's cells when it first arrives: the grid never changes.
    makeCharts(cells) {
      const colour = (i) => PALETTE[i % PALETTE.length];
      // Each cell: its mean, then the band's top and bottom (thin, unlabelled lines).
      const banded = cells.flatMap(
          (c, i) =>
              [{label: c.description, color: colour(i)},
               {label: `${c.description} max`, color: colour(i), width: 0.5, points: false},
               {label: `${c.description} min`, color: colour(i), width: 0.5, points: false}]);
      const bands = cells.map((c, i) => ({series: [3 * i + 2, 3 * i + 3], fill: `${colour(i)}22`}));
      const epochLegend = (u, v) => (v == null ? '' : String(v));
      // The table above is the legend: its squares have the cells' colours.
      const epochs = {
        xLabel: 'epoch',
        xLegend: epochLegend,
        xIncrements: [1, 2, 5, 10, 20, 50, 100],
        series: banded,
        bands,
        legend: false
      };
      this.accuracy = new LineChart(
          this.accuracyChart,
          Object.assign({yLabel: 'test accuracy (%)', yRange: [0, 100]}, epochs));
      this.loss = new LineChart(this.lossChart, Object.assign({yLabel: 'train loss'}, epochs));
      this.flow = new LineChart(this.flowChart, {
        xLabel: 'depth (0 = input, 1 = output)',
        yLabel: 'gradient norm',
        yLog: true,
        height: 260,
        xLegend: (u, v) => (v == null ? '' : v.toFixed(2)),
        yLegend: (u, v) => exponential(v),
        yValues: (u, splits) => splits.map((v) => (v == null ? '' : v.toExponential(0))),
        series: cells.map((c, i) => ({label: c.description, color: colour(i)}))
      });
      this.charts = [this.accuracy, this.loss, this.flow];
    }

    setSweep(sweep) {
      if (!this.accuracy) this.makeCharts(sweep.cells || []);
      this.sweep = sweep;
    }

    redraw() {
      const sweep = this.sweep;
      if (!sweep || sweep === this.drawn) return;
      this.drawn = sweep;
      const cells = sweep.cells || [];
      this.header.replaceChildren(
          el('h1', {}, `Sweep ${sweep.name || sweep.id}`),
          el('p', {class: 'muted', 'data-role': 'sweep-summary'},
             el('span', {class: `state ${sweep.state}`}, sweep.state),
             ` ${num(sweep.runsDone)} / ${num(sweep.runsTotal)} runs done · ${
                 cells.length} cells × ` +
                 `${(sweep.seeds || []).length} seeds (${(sweep.seeds || []).join(', ')})`));
      const best = Math.max(0, ...cells.map((c) => num((c.finalTestAccuracy || {}).mean)));
      const header = [
        'cell', 'runs', 'final test acc', 'best test acc', 'final train loss',
        'step-1 grad norm, first / last weight'
      ];
      const rows = cells.map((c, i) => {
        const done = num(c.runsSucceeded) + num(c.runsFailed) + num(c.runsCancelled);
        const final = c.finalTestAccuracy || {};
        const loss = c.finalTrainLoss || {};
        const first = c.firstLayerStep1GradNorm || {};
        const last = c.lastLayerStep1GradNorm || {};
        return el(
            'tr', {'data-cell': String(i)},
            el('td', {}, el('span', {style: `color:${PALETTE[i % PALETTE.length]}`}, '\u25A0 '),
               c.description),
            el('td', {class: 'num'},
               `${done} / ${(c.experimentIds || []).length}` +
                   (num(c.runsFailed) ? ` (${num(c.runsFailed)} failed)` : '')),
            el('td', {
              class: 'num',
              style: num(final.count) ? `background:${accuracyColour(num(final.mean), best)}` : ''
            },
               percentSpread(final)),
            el('td', {class: 'num'}, percentSpread(c.bestTestAccuracy)),
            el('td', {class: 'num'}, num(loss.count) ? num(loss.mean).toFixed(4) : '–'),
            el('td', {class: 'num'},
               num(first.count) ?
                   `${exponential(num(first.mean))} / ${exponential(num(last.mean))}` :
                   '–'));
      });
      this.table.replaceChildren(
          el('table', {class: 'experiments', 'data-role': 'sweep-table'},
             el('tr', {}, ...header.map((h) => el('th', {}, h))), ...rows));

      const bandPoints = (field) => cells.flatMap((c) => {
        const epochs = c.epochs || [];
        const points = (pick) => epochs.map((e) => [num(e.epoch), pick(e[field] || {})]);
        const scale = field === 'testAccuracy' ? 100 : 1;
        return [
          points((s) => scale * num(s.mean)), points((s) => scale * num(s.max)),
          points((s) => scale * num(s.min))
        ];
      });
      this.accuracy.setData(align(bandPoints('testAccuracy')));
      this.loss.setData(align(bandPoints('trainLoss')));
      const flows = cells.map((c) => {
        const weights = (c.step1Gradients || []).filter((l) => l.layerWeight);
        return weights.map(
            (l, i) =>
                [weights.length > 1 ? i / (weights.length - 1) : 0,
                 num((l.gradNorm || {}).mean) > 0 ? num(l.gradNorm.mean) : null]);
      });
      this.flow.setData(align(flows));
      this.flowChart.dataset.series = String(flows.filter((f) => f.length).length);
      this.accuracyChart.dataset.epochs =
          String(Math.max(0, ...cells.map((c) => (c.epochs || []).length)));
      const meanShares = (classes) =>
          classes && (classes.share || []).length ? classes.share.map((s) => num(s.mean)) : null;
      this.predictedTable.replaceChildren(predictedClassesTable(cells.map((c, i) => {
        const initial = c.initialPredictedClasses || {};
        const last = c.finalPredictedClasses || {};
        return {
          label: c.description,
          colour: PALETTE[i % PALETTE.length],
          names: initial.classNames || last.classNames || [],
          initial: meanShares(initial),
          initialEpoch: 0,
          last: meanShares(last),
          lastEpoch: num(last.epoch),
          key: String(i)
        };
      })));
    }

    resize() {
      for (const chart of this.charts) chart.resize();
    }
  }

  global.GradlabCharts = {
    ExperimentData,
    ExperimentView,
    CompareView,
    SweepView,
    el,
    percent,
    num,
    modelLabel
  };
})(window);
