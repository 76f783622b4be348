#!/usr/bin/python3
"""Summarises `gradlab export-metrics --table=predictions` CSV as a Markdown table.

For each run, at initialisation (epoch 0) and after its last epoch: the test accuracy, the
class predicted most and its share of the test images, the number of classes it predicts
at all, and the mean softmax output over the test split (each true class's mean weighted
by its images). Used by bench/predictions_study; usage: predictions_summary.py CSV.
"""
import collections
import csv
import sys


def main(path):
    # (experiment, epoch) -> rows
    cells = collections.defaultdict(list)
    models = {}
    for row in csv.DictReader(open(path, newline="")):
        cells[(row["experiment"], int(row["epoch"]))].append(row)
        models[row["experiment"]] = row["model"]
    print("| model | epoch | test accuracy | predicted most (share) | classes predicted "
          "| mean softmax over the test split, classes 0-9 |")
    print("|---|---|---|---|---|---|")
    for experiment, model in models.items():
        epochs = sorted(e for (x, e) in cells if x == experiment)
        for epoch in sorted({epochs[0], epochs[-1]}):
            rows = cells[(experiment, epoch)]
            samples = sum(int(r["count"]) for r in rows)
            correct = sum(int(r["count"]) for r in rows if r["true_class"] == r["predicted_class"])
            predicted = collections.Counter()
            softmax = collections.defaultdict(float)
            per_true = collections.Counter()
            for r in rows:
                predicted[(int(r["predicted_class"]), r["predicted_label"])] += int(r["count"])
                per_true[r["true_class"]] += int(r["count"])
            for r in rows:
                softmax[int(r["predicted_class"])] += (
                    float(r["mean_softmax"]) * per_true[r["true_class"]] / samples)
            (top, label), top_count = predicted.most_common(1)[0]
            used = sum(1 for count in predicted.values() if count > 0)
            print(f"| {model} | {epoch} | {100 * correct / samples:.2f}% | {top} {label} "
                  f"({100 * top_count / samples:.1f}%) | {used} | "
                  f"[{', '.join(f'{softmax[c]:.4f}' for c in sorted(softmax))}] |")


if __name__ == "__main__":
    main(sys.argv[1])
