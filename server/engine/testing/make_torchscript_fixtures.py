#!/usr/bin/python3
"""Writes the TorchScript files that torchscript_check_test checks, into the folder given.

Run by the test with Debian's python3-torch (1.13, the server's LibTorch):
  good.pt       a small residual CNN with BatchNorm and dropout for 3-channel images
  wide.pt       the same, but 100 outputs: fits no 10-class dataset
  from_file.pt  reads a file with torch.from_file inside forward
  print.pt      prints inside forward
  loop.pt       loops for ever inside forward
  hog.pt        asks for 2 GiB inside forward
  no_params.pt  no parameters at all
  state_dict.pt good.pt's weights saved by torch.save: a pickle, not TorchScript
  archive.pt    a zip of a text file: a zip, but not of a module
  simple_cnn.pt          tests/reference/models.py's simple_cnn, traced, built after
                         torch.manual_seed(42) for 3x32x32 images: the built-in simple_cnn's
                         initial weights for seed 42
  simple_cnn_fashion.pt  the same for Fashion-MNIST's 1x28x28 images
  good_step.txt good.pt's state_dict keys, then one SGD step of it in PyTorch (eval mode,
                lr 0.1, on Input() with labels 0-3): the loss and the sum of fc.weight
                after the step, as repr()
"""
import os
import sys
import zipfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "../../../tests/reference"))
import models  # noqa: E402


class Block(torch.nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(channels)

    def forward(self, x):
        return F.relu(x + self.bn(self.conv(x)))


class Net(torch.nn.Module):
    def __init__(self, outputs: int = 10):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = torch.nn.Sequential(Block(8), Block(8))
        self.pool = torch.nn.MaxPool2d(2)
        self.dropout = torch.nn.Dropout(0.1)
        self.fc = torch.nn.Linear(8, outputs)

    def forward(self, x):
        x = self.pool(F.relu(self.stem(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(self.dropout(x))


class ReadsAFile(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = Net()

    def forward(self, x):
        stolen = torch.from_file("/etc/hostname", False, 1, dtype=torch.uint8)
        return self.net(x) + stolen.float().sum()


class Prints(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = Net()

    def forward(self, x):
        print("hello from forward")
        return self.net(x)


class Loops(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = Net()

    def forward(self, x):
        i = 0
        while i >= 0:
            i = i + 1
        return self.net(x)


class Hogs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = Net()

    def forward(self, x):
        hog = torch.ones(1 << 29)  # 2 GiB
        return self.net(x) + hog[0]


class NoParameters(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10]


def Input():
    """A batch of 4 deterministic images: sin of 0, 1, 2, ..."""
    return torch.arange(4 * 3 * 32 * 32, dtype=torch.float32).sin().reshape(4, 3, 32, 32)


def one_step(path):
    model = torch.jit.load(path)
    model.eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(Input()), torch.arange(4))
    loss.backward()
    optimizer.step()
    return [",".join(model.state_dict().keys()), repr(loss.item()),
            repr(model.fc.weight.sum().item())]


def main(folder):
    torch.manual_seed(42)
    os.makedirs(folder, exist_ok=True)
    save = lambda module, name: torch.jit.script(module).save(os.path.join(folder, name))
    save(Net(), "good.pt")
    save(Net(100), "wide.pt")
    save(ReadsAFile(), "from_file.pt")
    save(Prints(), "print.pt")
    save(Loops(), "loop.pt")
    save(Hogs(), "hog.pt")
    save(NoParameters(), "no_params.pt")
    torch.save(Net().state_dict(), os.path.join(folder, "state_dict.pt"))
    with zipfile.ZipFile(os.path.join(folder, "archive.pt"), "w") as archive:
        archive.writestr("archive/notes.txt", "not a model\n")
    for name, channels, side in (("simple_cnn.pt", 3, 32), ("simple_cnn_fashion.pt", 1, 28)):
        torch.manual_seed(42)
        net = models.build("simple_cnn", in_channels=channels, height=side, width=side)
        torch.jit.trace(net, torch.zeros(1, channels, side, side)).save(
            os.path.join(folder, name))
    with open(os.path.join(folder, "good_step.txt"), "w") as out:
        out.write("\n".join(one_step(os.path.join(folder, "good.pt"))) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
