"""Your own CNN on gradlab: define it in PyTorch, script it, upload it, train it on
Fashion-MNIST with a live progress line, export the trained module, reload it in PyTorch
and evaluate it on the test images yourself.

    python examples/own_model.py [--server HOST:PORT] [--epochs 3] [--train N] [--test N]

Needs torch (Debian's python3-torch) and a gradlabd with a --state_dir that has
Fashion-MNIST (Debian's dataset-fashion-mnist puts it in /usr/share/datasets).
"""
import argparse
import gzip
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

import gradlab_client

# How gradlabd normalises Fashion-MNIST (server/engine/datasets.cc).
MEAN, STD = 0.2860, 0.3530


class SmallCnn(torch.nn.Module):
    """Two convolutions with BatchNorm, a global average pool and a linear classifier."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(16)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(32)
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def test_split(data_dir, count):
    def find(name):
        for candidate in (name, name + ".gz"):
            if os.path.exists(os.path.join(data_dir, candidate)):
                return os.path.join(data_dir, candidate)
        sys.exit(f"{name} is not in {data_dir}")

    images = read_idx(find("t10k-images-idx3-ubyte"))[:count]
    labels = read_idx(find("t10k-labels-idx1-ubyte"))[:count]
    x = torch.from_numpy(images.copy()).float().div(255).unsqueeze(1).sub(MEAN).div(STD)
    return x, torch.from_numpy(labels.astype(np.int64))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="gradlabd's host:port (default $GRADLAB_SERVER)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=0, help="first N training images; 0: all")
    parser.add_argument("--test", type=int, default=10000, help="first N test images")
    parser.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist",
                        help="Fashion-MNIST here, for the evaluation in PyTorch")
    args = parser.parse_args()

    torch.manual_seed(0)
    scripted = torch.jit.script(SmallCnn())
    client = gradlab_client.connect(args.server)
    model = client.upload_model(scripted, name="small_cnn")
    print(f"uploaded small_cnn: {model.id[:12]}, {model.parameter_count} parameters")
    run = client.start_experiment(model=f"uploaded:{model.id}", dataset="fashion_mnist",
                                  epochs=args.epochs, max_train_samples=args.train,
                                  max_test_samples=args.test, learning_rate=0.01)

    def progress(event):
        if event.HasField("batch_progress"):
            p = event.batch_progress
            print(f"\repoch {p.epoch}: batch {p.batch}/{p.batches}  loss {p.running_loss:.4f}"
                  f"  {p.images_per_second:.0f} images/s", end="", flush=True)
        elif event.HasField("epoch_metrics"):
            m = event.epoch_metrics
            print(f"\repoch {m.epoch}: train loss {m.train_loss:.4f}, test accuracy "
                  f"{100 * m.test_accuracy:.2f}%          ")

    finished = client.wait(run.id, on_event=progress)
    if finished.state != gradlab_client.messages.SUCCEEDED:
        sys.exit(f"the run ended {gradlab_client.messages.ExperimentState.Name(finished.state)}:"
                 f" {finished.error}")

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "small_cnn_trained.pt")
        epoch = client.export_model(run.id, path, which="last", format="torchscript")
        trained = torch.jit.load(path)
    trained.eval()
    x, y = test_split(args.data_dir, args.test)
    with torch.no_grad():
        correct = sum(int(trained(x[i:i + 128]).argmax(1).eq(y[i:i + 128]).sum())
                      for i in range(0, len(y), 128))
    print(f"reloaded epoch {epoch} in PyTorch: {100 * correct / len(y):.2f}% of {len(y)} test "
          f"images (the server: {100 * finished.last_metrics.test_accuracy:.2f}%)")


if __name__ == "__main__":
    main()
