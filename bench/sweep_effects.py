#!/usr/bin/python3
"""Which knobs of a sweep change the final test accuracy by more than the seeds do.

Reads `gradlab export-metrics SWEEP --format=csv` files and, for each axis, compares every
pair of cells that differ in that axis alone: the difference of their mean final test
accuracy against the spread between seeds (each cell's sample standard deviation), and
whether the seeds' ranges are apart (every run of one cell above every run of the other).

    bench/sweep_effects.py docs/results/sweep_study/deep_cnn.csv ...
"""
import csv
import statistics
import sys

FIXED = {'experiment', 'name', 'sweep', 'cell', 'model', 'dataset', 'seed', 'epoch',
         'train_loss', 'train_accuracy', 'test_loss', 'test_accuracy', 'best_test_accuracy',
         'learning_rate', 'epoch_seconds', 'images_per_second'}


def final_accuracies(path):
    """{cell values (tuple of (axis, value)): [final test accuracy of each run]}, axes."""
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    axes = [column for column in rows[0] if column not in FIXED]
    last = {}  # experiment -> its last epoch's row
    for row in rows:
        if row['experiment'] not in last or int(row['epoch']) > int(last[row['experiment']]['epoch']):
            last[row['experiment']] = row
    # Each axis's values in the sweep's order (cells are numbered row-major over the axes).
    order = {axis: [] for axis in axes}
    for row in sorted(rows, key=lambda r: int(r['cell'])):
        for axis in axes:
            if row[axis] not in order[axis]:
                order[axis].append(row[axis])
    cells = {}
    for row in last.values():
        key = tuple((axis, row[axis]) for axis in axes)
        cells.setdefault(key, []).append(100 * float(row['test_accuracy']))
    return cells, axes, order, rows[0]['model']


def describe(key):
    return ', '.join(f'{axis}={value}' for axis, value in key)


def main(paths):
    for path in paths:
        cells, axes, order, model = final_accuracies(path)
        print(f'## {model} ({path})')
        print('| axis | from -> to | with | final test acc. (mean) | difference | '
              'seed std (from / to) | seeds apart |')
        print('|---|---|---|---|---|---|---|')
        for axis in axes:
            for key, runs in sorted(cells.items()):
                values = dict(key)
                for other_key, other_runs in sorted(cells.items()):
                    other = dict(other_key)
                    if order[axis].index(other[axis]) <= order[axis].index(values[axis]):
                        continue
                    if any(other[a] != values[a] for a in axes if a != axis):
                        continue
                    rest = describe(tuple((a, values[a]) for a in axes if a != axis)) or '-'
                    a, b = statistics.mean(runs), statistics.mean(other_runs)
                    sa = statistics.stdev(runs) if len(runs) > 1 else 0.0
                    sb = statistics.stdev(other_runs) if len(other_runs) > 1 else 0.0
                    apart = min(other_runs) > max(runs) or max(other_runs) < min(runs)
                    print(f'| {axis} | {values[axis]} -> {other[axis]} | {rest} | '
                          f'{a:.2f}% -> {b:.2f}% | {b - a:+.2f} | {sa:.2f} / {sb:.2f} | '
                          f'{"yes" if apart else "no"} |')
        print()


if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
