"""The PyTorch reference, trained the reference's way, for side-by-side speed numbers.

usage: /usr/bin/python3 bench/reference_train.py --model=resnet [--dataset=cifar10]
           [--data_dir=data] [--max_train_samples=2560] [--max_test_samples=1000] [--epochs=2]
           [--threads=2]

The models of tests/reference/models.py (those gradlab's engine builds, bit for bit), SGD
with momentum 0.9 and lr 0.001, batch 128, torch.utils.data.DataLoader with 2 workers and
shuffling, RandomCrop(32, padding=4) + RandomHorizontalFlip + Normalize per image, NCHW
fp32, seed 42. Data: CIFAR-10 from DATA_DIR/cifar-10-batches-bin, per image as torchvision
serves it, the first N training images; or, with --dataset=synthetic, random CIFAR-shaped
images (3x32x32 uint8, 10 classes) through the same per-image pipeline, for machines
without CIFAR-10. Prints one line per epoch and a summary line in the format
of build/bench/run_experiment. Run with Debian's python3-torch (/usr/bin/python3); used by
bench/versus_reference, never by gradlab.
"""
import argparse
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
import models  # noqa: E402

class Cifar10(torch.utils.data.Dataset):
    """CIFAR-10 from DATA_DIR/cifar-10-batches-bin (or random images of its shape when
    data_dir is None), served as torchvision's CIFAR10 serves it: each image a PIL image
    through the transform, one at a time."""

    def __init__(self, data_dir, train, transform, synthetic_size=0):
        if data_dir is None:
            rng = np.random.default_rng(42 if train else 43)
            self.images = rng.integers(0, 256, size=(synthetic_size, 32, 32, 3), dtype=np.uint8)
            self.labels = rng.permutation(np.arange(synthetic_size) % 10).astype(np.int64)
        else:
            names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
            raw = b"".join(open(os.path.join(data_dir, "cifar-10-batches-bin", name), "rb").read()
                           for name in names)
            records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 1 + 3 * 32 * 32)
            self.labels = records[:, 0].astype(np.int64)
            self.images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # HWC
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet")
    parser.add_argument("--depth", type=int, default=20, help="cifar_resnet: 6n+2 layers")
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "synthetic"])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--max_train_samples", type=int, default=2560)
    parser.add_argument("--max_test_samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    model = models.build(args.model, depth=args.depth)
    normalize = transforms.Normalize(CIFAR_MEAN, CIFAR_STD)
    data_dir = args.data_dir if args.dataset == "cifar10" else None
    train_set = Cifar10(
        data_dir, train=True, synthetic_size=args.max_train_samples,
        transform=transforms.Compose([transforms.RandomCrop(32, padding=4),
                                      transforms.RandomHorizontalFlip(),
                                      transforms.ToTensor(), normalize]))
    test_set = Cifar10(
        data_dir, train=False, synthetic_size=args.max_test_samples,
        transform=transforms.Compose([transforms.ToTensor(), normalize]))
    train_set = torch.utils.data.Subset(train_set, range(args.max_train_samples))
    test_set = torch.utils.data.Subset(test_set, range(args.max_test_samples))
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True,
                                               num_workers=2)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=128, shuffle=False,
                                              num_workers=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

    rates = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        start = time.perf_counter()
        seen, loss_sum, correct = 0, 0.0, 0
        for images, labels in train_loader:
            optimizer.zero_grad()
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            loss.backward()
            optimizer.step()
            seen += labels.size(0)
            loss_sum += loss.item() * labels.size(0)
            correct += (logits.argmax(1) == labels).sum().item()
        train_seconds = time.perf_counter() - start
        model.eval()
        test_correct, test_seen = 0, 0
        with torch.no_grad():
            for images, labels in test_loader:
                test_correct += (model(images).argmax(1) == labels).sum().item()
                test_seen += labels.size(0)
        rates.append(seen / train_seconds)
        print(f"[Epoch {epoch:02d}] train {loss_sum / seen:.4f}/{100 * correct / seen:.2f}% | "
              f"val {100 * test_correct / test_seen:.2f}%  {train_seconds:.1f}s "
              f"{rates[-1]:.1f} img/s", flush=True)
    main_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"summary model={args.model} mean_images_per_second={sum(rates) / len(rates):.1f} "
          f"peak_rss_mb={main_mb:.0f} largest_worker_peak_rss_mb={worker_mb:.0f}")


if __name__ == "__main__":
    main()
