// A gradlab report: one self-contained page, written by `gradlab report`. Its data is
// inline (#report-data: {"generatedTime", "sweeps": [Sweep], "experiments": [{"experiment",
// "metrics": [MetricsEvent], "gradients": [GradientSnapshot]}]}), in the HTTP API's JSON.
(function () {
  'use strict';
  const { ExperimentData, ExperimentView, CompareView, SweepView, el } = window.GradlabCharts;
  const report = JSON.parse(document.getElementById('report-data').textContent);
  const main = document.getElementById('main');
  const views = [];

  for (const sweep of report.sweeps || []) {
    const section = el('div', { 'data-sweep': sweep.id });
    main.append(section);
    const view = new SweepView(section);
    view.setSweep(sweep);
    views.push(view);
  }
  const datas = report.experiments.map((entry) => {
    const data = new ExperimentData(entry.experiment);
    for (const event of entry.metrics) data.addMetrics(event);
    for (const snapshot of entry.gradients) data.addSnapshot(snapshot);
    return data;
  });
  if (datas.length > 1) {
    const section = el('section', { class: 'experiment' });
    main.append(section);
    views.push(new CompareView(section, datas));
  }
  for (const data of datas) {
    const section = el('div', { 'data-id': data.experiment.id });
    main.append(section);
    const view = new ExperimentView(section, data, { live: false });
    view.select(0);  // step 1, the untrained network, first
    views.push(view);
  }
  for (const view of views) view.redraw(true);
  window.addEventListener('resize', () => { for (const view of views) view.resize(); });
  document.body.dataset.rendered = 'true';
})();
