#!/usr/bin/python3
"""Figure and tables of bench/degradation_study, in He et al. 2016's Figure 6 layout.

Reads DIR/sweep.out (the CLI's live output of the sweep: each run's epochs in the
reference's format) and DIR/sweep.json (the Sweep from the dashboard's API) and writes
into DIR:
  figure6.png     training error (dashed) and test error (bold) per epoch, plain nets on
                  the left, ResNets on the right, one colour per depth, as the paper draws
  gradients.png   every conv and linear weight's gradient norm at step 1 (the untrained
                  network), from input to output, for the eight nets
  results.md      final training and test error per depth, both families, with the paper's
                  test errors beside them, and the step-1 gradient norm of the first and
                  the last layer per depth

Needs Debian's python3-matplotlib.   usage: bench/degradation_figures.py DIR
"""
import json
import os
import re
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

# He et al. 2016, Table 6 (CIFAR-10 test error, %), for the table's reference column.
PAPER_TEST_ERROR = {('ResNet', 20): 8.75, ('ResNet', 32): 7.51, ('ResNet', 44): 7.17,
                    ('ResNet', 56): 6.97, ('ResNet', 110): 6.43}
COLOURS = {20: '#e6a100', 32: '#1f77b4', 44: '#2ca02c', 56: '#d62728', 110: '#000000'}


def family(skip):
    return 'ResNet' if skip in ('true', True) else 'plain'


# "[3/8 done] skip_connections=false, depth=20, seed 42: [Epoch 04] train 1.0976/60.17% |
# val 1.0726/61.34% (best 61.34%)"
EPOCH_LINE = re.compile(r'skip_connections=(\w+), depth=(\d+), seed \d+: \[Epoch (\d+)\] '
                        r'train [\d.]+/([\d.]+)% \| val [\d.]+/([\d.]+)%')


def read_epochs(path):
    """{(family, depth): [(epoch, train error %, test error %)]}, epoch order."""
    runs = {}
    with open(path) as f:
        for match in EPOCH_LINE.finditer(f.read()):
            skip, depth, epoch, train, test = match.groups()
            runs.setdefault((family(skip), int(depth)), []).append(
                (int(epoch), 100 - float(train), 100 - float(test)))
    return {key: sorted(rows) for key, rows in runs.items()}


def read_gradients(path):
    """{(family, depth): (first, last, [(name, step-1 grad norm) of each weight layer])}."""
    with open(path) as f:
        sweep = json.load(f)
    axes = [axis['field'] for axis in sweep['spec']['axes']]
    result = {}
    for cell in sweep['cells']:
        values = dict(zip(axes, cell['values']))
        key = (family(values['skip_connections']), int(values['depth']))
        layers = [(g['name'], g['gradNorm']['mean']) for g in cell.get('step1Gradients', [])
                  if g.get('layerWeight')]
        result[key] = (cell['firstLayerStep1GradNorm']['mean'],
                       cell['lastLayerStep1GradNorm']['mean'], layers)
    return result


def plot_errors(runs, out):
    fig, panels = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for panel, name in zip(panels, ('plain', 'ResNet')):
        for (fam, depth), rows in sorted(runs.items()):
            if fam != name:
                continue
            epochs = [r[0] for r in rows]
            colour = COLOURS.get(depth)
            panel.plot(epochs, [r[1] for r in rows], '--', color=colour, linewidth=1.2)
            panel.plot(epochs, [r[2] for r in rows], '-', color=colour, linewidth=2.2,
                       label=f'{name}-{depth}')
        last_epoch = max(rows[-1][0] for rows in runs.values())
        panel.set_xticks(range(1, last_epoch + 1))
        panel.set_title(f'{name} nets' if name == 'plain' else 'ResNets')
        panel.set_xlabel('epoch')
        panel.grid(alpha=0.3)
        panel.legend()
    panels[0].set_ylabel('error (%): dashed training, bold test')
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_gradients(gradients, out):
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for (fam, depth), (_, _, layers) in sorted(gradients.items()):
        ax.plot(range(1, len(layers) + 1), [norm for _, norm in layers],
                '--' if fam == 'plain' else '-', color=COLOURS.get(depth),
                label=f'{fam}-{depth}')
    ax.set_yscale('log')
    ax.set_xlabel('weighted layer, input (1) to output')
    ax.set_ylabel('gradient norm at step 1')
    ax.grid(alpha=0.3, which='both')
    ax.legend(ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def write_tables(runs, gradients, out):
    lines = ['| depth | plain train err. | plain test err. | ResNet train err. | '
             'ResNet test err. | paper ResNet test err. (164 epochs) |',
             '|---|---|---|---|---|---|']
    depths = sorted({depth for _, depth in runs})
    for depth in depths:
        cells = []
        for fam in ('plain', 'ResNet'):
            last = runs.get((fam, depth), [(0, float('nan'), float('nan'))])[-1]
            cells += [f'{last[1]:.2f}%', f'{last[2]:.2f}%']
        paper = PAPER_TEST_ERROR.get(('ResNet', depth))
        paper_text = f'{paper:.2f}%' if paper else '-'
        lines.append(f'| {depth} | ' + ' | '.join(cells) + f' | {paper_text} |')
    lines += ['', '| depth | plain: first layer | plain: last layer | ResNet: first layer | '
              'ResNet: last layer |', '|---|---|---|---|---|']
    for depth in depths:
        cells = []
        for fam in ('plain', 'ResNet'):
            first, last, _ = gradients.get((fam, depth), (float('nan'), float('nan'), []))
            cells += [f'{first:.4g}', f'{last:.4g}']
        lines.append(f'| {depth} | ' + ' | '.join(cells) + ' |')
    with open(out, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


def main(directory):
    runs = read_epochs(os.path.join(directory, 'sweep.out'))
    gradients = read_gradients(os.path.join(directory, 'sweep.json'))
    plot_errors(runs, os.path.join(directory, 'figure6.png'))
    plot_gradients(gradients, os.path.join(directory, 'gradients.png'))
    write_tables(runs, gradients, os.path.join(directory, 'results.md'))


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
