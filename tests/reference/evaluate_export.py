"""Evaluates a TorchScript module that `gradlab export --format=torchscript` wrote on the
first N test images of Fashion-MNIST, as gradlabd's evaluation does: normalised with the
dataset's mean and std, in batches of BATCH, the loss averaged over the samples.

usage: /usr/bin/python3 tests/reference/evaluate_export.py FILE DATA_DIR N BATCH

Prints {"loss": ..., "accuracy": ...} as JSON. Used by tests/model_upload_e2e_test.cc,
never by gradlab.
"""
import gzip
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(data_dir, name):
    for candidate in (name, name + ".gz"):
        if os.path.exists(os.path.join(data_dir, candidate)):
            return os.path.join(data_dir, candidate)
    sys.exit(f"{name} is not in {data_dir}")


def main():
    path, data_dir, count, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    images = read_idx(find(data_dir, "t10k-images-idx3-ubyte"))[:count]
    labels = read_idx(find(data_dir, "t10k-labels-idx1-ubyte"))[:count]
    x = torch.from_numpy(images.copy()).to(torch.float32).div_(255.0).unsqueeze(1)
    x = x.sub_(FASHION_MNIST_MEAN).div_(FASHION_MNIST_STD)
    y = torch.from_numpy(labels.astype(np.int64))
    module = torch.jit.load(path)
    module.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for first in range(0, count, batch):
            logits = module(x[first:first + batch])
            target = y[first:first + batch]
            loss_sum += F.cross_entropy(logits, target).item() * len(target)
            correct += int(logits.argmax(1).eq(target).sum())
    print(json.dumps({"loss": loss_sum / count, "accuracy": correct / count}))


if __name__ == "__main__":
    main()
