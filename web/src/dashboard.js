// gradlab's live dashboard, served by gradlabd. Pages (by the URL's hash):
//   #/                      every experiment, live (the /api/v1/watch event stream)
//   #/experiments/ID        one experiment's curves and gradient flow, live
//   #/compare/ID1,ID2,...   several experiments overlaid
//   #/sweeps/ID             a sweep: its grid's table and each cell's bands, live
// Live data comes from Server-Sent Events; EventSource reconnects by itself and resumes
// after the last event it had (Last-Event-ID).
(function () {
  'use strict';
  const {ExperimentData, ExperimentView, CompareView, SweepView, el, percent, num, modelLabel} =
      window.GradlabCharts;
  const main = document.getElementById('main');
  const connection = document.getElementById('connection');

  // A server with --auth_tokens_file wants a read token: kept for this tab only, sent as
  // a header by fetch and as ?access_token= by EventSource (which cannot send headers).
  const TOKEN_KEY = 'gradlab-token';
  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';
  const withToken = (url) => (token()
    ? `${url}${url.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(token())}` : url);

  // What the current page opened, closed when the page changes.
  let sources = [];
  let views = [];
  let frame = 0;

  function open(url, handlers) {
    const source = new EventSource(withToken(url));
    source.onopen = () => { connection.className = 'connection live'; connection.textContent = 'live'; };
    source.onerror = () => {
      connection.className = 'connection lost';
      connection.textContent = 'reconnecting…';
    };
    for (const [event, handler] of Object.entries(handlers)) {
      source.addEventListener(event, (e) => handler(JSON.parse(e.data)));
    }
    // The stream's last event: the experiment has finished (or cannot be streamed). A
    // server shutting down ends with UNAVAILABLE: keep reconnecting until it is back.
    source.addEventListener('end', (e) => {
      const end = JSON.parse(e.data);
      if (end.code !== 'UNAVAILABLE') source.close();
      if (handlers.onEnd) handlers.onEnd(end);
    });
    sources.push(source);
    return source;
  }

  function closeAll() {
    for (const source of sources) source.close();
    sources = [];
    views = [];
  }

  // Redraws what changed, at most once per animation frame.
  function scheduleRedraw() {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      for (const view of views) view.redraw();
    });
  }

  class Unauthenticated extends Error {}

  async function fetchJson(url) {
    const response = await fetch(url, token() ? { headers: { Authorization: `Bearer ${token()}` } } : {});
    const body = await response.json();
    const message = body.error ? body.error.message : response.statusText;
    if (response.status === 401) throw new Unauthenticated(message);
    if (!response.ok) throw new Error(message);
    return body;
  }

  // Asks for a token; the page starts again with it.
  function tokenPage(message) {
    const input = el('input', { type: 'password', 'aria-label': 'token', size: '40',
      autocomplete: 'off' });
    const form = el('form', { class: 'panel', 'data-role': 'token-form',
      onsubmit: (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        route();
      } },
    el('h1', {}, 'This gradlabd needs a token'),
    el('p', { class: 'muted' }, `${message}. A token with the read role (from the server's ` +
      '--auth_tokens_file) shows the dashboard; it is kept in this tab only.'),
    el('div', { class: 'toolbar' }, input, el('button', { class: 'primary', type: 'submit' }, 'Use token')));
    main.replaceChildren(form);
    input.focus();
  }

  function showError(message) {
    main.replaceChildren(el('div', { class: 'panel error-box' }, message));
  }

  // The experiment list.
  function listPage() {
    const experiments = new Map();  // id -> Experiment
    const progress = new Map();     // id -> BatchProgress of a running one
    const watching = new Map();     // id -> EventSource of a running one's metrics
    const selected = new Set();
    const compare = el('button', { class: 'primary', disabled: '',
      onclick: () => { location.hash = `#/compare/${[...selected].join(',')}`; } }, 'Compare selected');
    const body = el('tbody');
    // The sweeps, when there are any: fetched again when a run of one changes.
    const sweeps = el('div', {'data-role': 'sweep-list'});
    const refreshSweeps = serially(() => fetchJson('/api/v1/sweeps').then((list) => {
      const rows = (list.sweeps || [])
                       .map(
                           (w) => el(
                               'tr', {'data-sweep': w.id},
                               el('td', {}, el('a', {href: `#/sweeps/${w.id}`}, w.name || w.id),
                                  w.name ? el('span', {class: 'muted'}, ' ' + w.id) : null),
                               el('td', {}, el('span', {class: `state ${w.state}`}, w.state)),
                               el('td', {class: 'num'}, `${num(w.runsDone)} / ${num(w.runsTotal)}`),
                               el('td', {class: 'num'}, String((w.cells || []).length)),
                               el('td', {class: 'num'}, String((w.seeds || []).length)),
                               el('td', {class: 'muted'},
                                  w.createdTime ? new Date(w.createdTime).toLocaleString() : '')));
      sweeps.replaceChildren(
          ...(rows.length ?
                  [
                    el('h1', {}, 'Sweeps'),
                    el('table', {class: 'experiments'},
                       el('thead', {},
                          el('tr', {},
                             ...['sweep', 'state', 'runs', 'cells', 'seeds', 'created'].map(
                                 (h) => el('th', {}, h)))),
                       el('tbody', {}, ...rows))
                  ] :
                  []));
    }));
    refreshSweeps();
    main.replaceChildren(
        sweeps,
        el('div', {class: 'toolbar'}, el('h1', {}, 'Experiments'), compare,
           el('span', {class: 'muted'},
              'Submit with: gradlab submit --model=resnet --dataset=cifar10')),
        el('table', {class: 'experiments', 'data-role': 'experiment-list'},
           el('thead', {},
              el('tr', {},
                 ...['', 'experiment', 'model', 'dataset', 'state', 'progress', 'best test acc',
                     'train loss', 'created']
                     .map((h) => el('th', {}, h)))),
           body));

    // A running experiment's batch progress: its metrics stream, from the newest events.
    function follow(experiment) {
      const running = experiment.state === 'RUNNING';
      if (running && !watching.has(experiment.id)) {
        const source = open(`/api/v1/experiments/${experiment.id}/events?kinds=metrics`, {
          metrics: (event) => {
            if (event.batchProgress) {
              progress.set(experiment.id, event.batchProgress);
              scheduleRedraw();
            }
          },
        });
        watching.set(experiment.id, source);
      } else if (!running && watching.has(experiment.id)) {
        watching.get(experiment.id).close();
        watching.delete(experiment.id);
        progress.delete(experiment.id);
      }
    }

    function row(e) {
      const spec = e.spec || {};
      const p = progress.get(e.id);
      const epochs = Math.max(1, num(spec.epochs));
      let done = e.state === 'SUCCEEDED' ? 1 : Math.max(0, num(e.currentEpoch) - 1) / epochs;
      if (p && e.state === 'RUNNING' && num(p.epoch) === num(e.currentEpoch)) {
        done += num(p.batch) / Math.max(1, num(p.batches)) / epochs;
      }
      const checkbox = el('input', { type: 'checkbox', 'aria-label': `select ${e.id}`,
        onchange: (event) => {
          if (event.target.checked) selected.add(e.id); else selected.delete(e.id);
          compare.disabled = selected.size < 1;
        } });
      checkbox.checked = selected.has(e.id);
      const last = e.lastMetrics || {};
      return el(
          'tr', {'data-id': e.id}, el('td', {}, checkbox),
          el('td', {}, el('a', {href: `#/experiments/${e.id}`}, e.name || e.id),
             e.name ? el('span', {class: 'muted'}, ' ' + e.id) : null),
          el('td', {}, modelLabel(spec.model)), el('td', {}, spec.dataset),
          el('td', {}, el('span', {class: `state ${e.state}`}, e.state),
             e.state === 'QUEUED' ? el('span', {class: 'muted'}, ` #${e.queuePosition}`) : null),
          el('td', {class: 'progress'},
             `epoch ${num(e.currentEpoch)} / ${num(spec.epochs)}` +
                 (p && e.state === 'RUNNING' ? ` · ${num(p.imagesPerSecond).toFixed(0)} img/s` :
                                               ''),
             el('div', {class: 'bar'},
                el('div', {style: `width:${(100 * Math.min(1, done)).toFixed(1)}%`}))),
          el('td', {class: 'num'}, num(last.epoch) ? percent(num(e.bestTestAccuracy)) : '–'),
          el('td', {class: 'num'},
             p && e.state === 'RUNNING' ? num(p.runningLoss).toFixed(4) :
                                          (num(last.epoch) ? num(last.trainLoss).toFixed(4) : '–')),
          el('td', {class: 'muted'},
             e.createdTime ? new Date(e.createdTime).toLocaleString() : ''));
    }

    views.push({
      redraw() {
        const list = [...experiments.values()].sort((a, b) =>
          String(b.createdTime).localeCompare(String(a.createdTime)));
        body.replaceChildren(...list.map(row));
        if (!list.length) {
          body.append(el('tr', {}, el('td', { colspan: '9', class: 'empty' },
            'No experiments yet. Start one with gradlab submit, or scripts/demo.')));
        }
      },
      resize() {},
    });
    open('/api/v1/watch', {
      experiment: (experiment) => {
        experiments.set(experiment.id, experiment);
        follow(experiment);
        // Again a moment later: the server refreshes the sweep just after its run changes.
        if (((experiment.spec || {}).labels || {}).sweep) {
          refreshSweeps();
          setTimeout(refreshSweeps, 1000);
        }
        scheduleRedraw();
      },
      removed: ({ id }) => {
        experiments.delete(id);
        selected.delete(id);
        scheduleRedraw();
      },
    });
    scheduleRedraw();
  }

  // One experiment: its data from the events stream (replay, then live).
  function experimentPage(id) {
    const data = new ExperimentData(null);
    fetchJson(`/api/v1/experiments/${id}`).then((experiment) => {
      data.setExperiment(experiment);
      main.replaceChildren();
      const view = new ExperimentView(main, data, { live: true });
      views.push(view);
      scheduleRedraw();
      const refresh = () => fetchJson(`/api/v1/experiments/${id}`)
        .then((e) => { data.setExperiment(e); scheduleRedraw(); }).catch(() => {});
      open(`/api/v1/experiments/${id}/events`, {
        metrics: (event) => {
          data.addMetrics(event);
          if (event.stateChange || event.epochMetrics) refresh();
          scheduleRedraw();
        },
        gradients: (snapshot) => {
          data.addSnapshot(snapshot);
          scheduleRedraw();
        },
        onEnd: refresh,
      });
    }).catch((error) => showError(`Experiment ${id}: ${error.message}`));
  }

  // Several experiments overlaid; each follows its metrics live.
  function comparePage(ids) {
    const datas = ids.map(() => new ExperimentData(null));
    Promise.all(ids.map((id) => fetchJson(`/api/v1/experiments/${id}`))).then((experiments) => {
      experiments.forEach((e, i) => datas[i].setExperiment(e));
      main.replaceChildren(el('h1', {}, `Comparing ${ids.length} experiments`));
      views.push(new CompareView(main, datas));
      ids.forEach((id, i) => {
        const data = datas[i];
        const stepOne = () => fetchJson(`/api/v1/experiments/${id}/snapshot?step=1`)
          .then((s) => { if (num(s.step) === 1) { data.addSnapshot(s); scheduleRedraw(); } })
          .catch(() => {});
        stepOne();
        open(`/api/v1/experiments/${id}/events?kinds=metrics`, {
          metrics: (event) => {
            data.addMetrics(event);
            if (event.stateChange || event.epochMetrics) {
              fetchJson(`/api/v1/experiments/${id}`).then((e) => { data.setExperiment(e); scheduleRedraw(); });
              if (!data.snapshots.length) stepOne();
            }
            scheduleRedraw();
          },
        });
      });
      scheduleRedraw();
    }).catch((error) => showError(`Compare: ${error.message}`));
  }

  // Calls `load` now and whenever asked again, one call at a time: a request made while one
  // runs starts another once it is done.
  function serially(load) {
    let running = false;
    let again = false;
    const run = () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      load().catch(() => {}).finally(() => {
        running = false;
        if (again) {
          again = false;
          run();
        }
      });
    };
    return run;
  }

  // A sweep: whole, then again at each change the server stores, from its events stream
  // (which a reconnecting browser resumes after the last sequence it had).
  function sweepPage(id) {
    fetchJson(`/api/v1/sweeps/${id}`)
        .then((sweep) => {
          main.replaceChildren();
          const view = new SweepView(main);
          view.setSweep(sweep);
          views.push(view);
          scheduleRedraw();
          open(`/api/v1/sweeps/${id}/events?from_sequence=${num(sweep.sequence) + 1}`, {
            sweep: (changed) => {
              view.setSweep(changed);
              scheduleRedraw();
            },
          });
        })
        .catch((error) => showError(`Sweep ${id}: ${error.message}`));
  }

  // Checks the token first (EventSource cannot tell a 401 from a lost connection).
  let routes = 0;  // a newer route wins over an older one still checking
  function route() {
    closeAll();
    const ticket = ++routes;
    fetchJson('/api/v1/server').then(() => { if (ticket === routes) showPage(); }).catch((error) => {
      if (ticket !== routes) return;
      if (error instanceof Unauthenticated) tokenPage(error.message);
      else showError(`gradlabd: ${error.message}`);
    });
  }

  function showPage() {
    const hash = location.hash.replace(/^#/, '') || '/';
    const experiment = hash.match(/^\/experiments\/([^/]+)$/);
    const compare = hash.match(/^\/compare\/([^/]+)$/);
    const sweep = hash.match(/^\/sweeps\/([^/]+)$/);
    if (sweep) {
      sweepPage(decodeURIComponent(sweep[1]));
    } else if (experiment) {
      experimentPage(decodeURIComponent(experiment[1]));
    } else if (compare) {
      comparePage(compare[1].split(',').filter(Boolean).map(decodeURIComponent));
    } else {
      listPage();
    }
  }

  window.addEventListener('hashchange', route);
  window.addEventListener('resize', () => { for (const view of views) view.resize(); });
  route();
})();
