"""The deep plain CNN's sweep: BatchNorm off and on x PyTorch's default and Kaiming
initialisation, each cell with several seeds, on Fashion-MNIST. Prints each cell's final
test accuracy (mean and spread over its seeds) and, when matplotlib is there (Debian's
python3-matplotlib), saves the cells' test-accuracy curves (mean line, min-max band) as
a PNG.

    python examples/sweep.py [--server HOST:PORT] [--epochs 3] [--seeds 2] [--train N]
        [--test N] [--png sweep.png]
"""
import argparse

import gradlab_client


def plot(sweep, path):
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no figure (apt install python3-matplotlib)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for cell in sweep.cells:
        epochs = [e.epoch for e in cell.epochs]
        accuracy = [100 * e.test_accuracy.mean for e in cell.epochs]
        line, = axes.plot(epochs, accuracy, marker="o", label=cell.description)
        axes.fill_between(epochs, [100 * e.test_accuracy.min for e in cell.epochs],
                          [100 * e.test_accuracy.max for e in cell.epochs],
                          color=line.get_color(), alpha=0.2)
    axes.axhline(10, color="gray", linestyle=":", label="chance (10%)")
    axes.set_xlabel("epoch")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"deep_cnn on Fashion-MNIST: {len(sweep.seeds)} seeds per cell")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="gradlabd's host:port (default $GRADLAB_SERVER)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--train", type=int, default=4000, help="first N training images")
    parser.add_argument("--test", type=int, default=2000, help="first N test images")
    parser.add_argument("--png", default="sweep.png", help="where the figure goes")
    args = parser.parse_args()

    client = gradlab_client.connect(args.server)
    sweep = client.start_sweep(
        model="deep_cnn", dataset="fashion_mnist", epochs=args.epochs,
        max_train_samples=args.train, max_test_samples=args.test,
        vary={"batch_norm": [False, True], "init": ["pytorch_default", "kaiming_normal"]},
        seeds=args.seeds, name="batch_norm x init")
    runs = sum(len(cell.experiment_ids) for cell in sweep.cells)
    print(f"sweep {sweep.id}: {len(sweep.cells)} cells x {args.seeds} seeds, {runs} runs")
    for state in client.follow_sweep(sweep.id):
        print(f"\r{state.runs_done} of {state.runs_total} runs done", end="", flush=True)
    print()
    sweep = client.get_sweep(sweep.id)
    for cell in sweep.cells:
        final = cell.final_test_accuracy
        print(f"{cell.description:45} test accuracy {100 * final.mean:6.2f}% "
              f"+- {100 * final.std:.2f} (n={final.count})")
    plot(sweep, args.png)


if __name__ == "__main__":
    main()
