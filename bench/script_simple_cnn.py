"""Writes tests/reference/models.py's simple_cnn for Fashion-MNIST (1x28x28), built after
torch.manual_seed(42) (the built-in model's initial weights for seed 42), as TorchScript
twice, into the folder given: traced.pt (torch.jit.trace) and scripted.pt (torch.jit.script
of the same layers, its forward written out). For bench/uploaded_model_speed.

usage: /usr/bin/python3 bench/script_simple_cnn.py FOLDER
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests/reference"))
import models  # noqa: E402


class Scriptable(torch.nn.Module):
    """simple_cnn's layers with its forward written out, which torch.jit.script compiles
    (models.SimpleCNN's getattr(self, f"conv{i}") does not)."""

    def __init__(self, net):
        super().__init__()
        self.conv1, self.conv2, self.conv3, self.fc = net.conv1, net.conv2, net.conv3, net.fc

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        return self.fc(torch.flatten(x, 1))


def main(folder):
    for name, make in (("traced", lambda net: torch.jit.trace(net, torch.zeros(1, 1, 28, 28))),
                       ("scripted", lambda net: torch.jit.script(Scriptable(net)))):
        torch.manual_seed(42)
        net = models.build("simple_cnn", in_channels=1, height=28, width=28)
        make(net).save(os.path.join(folder, name + ".pt"))


if __name__ == "__main__":
    main(sys.argv[1])
