"""The PyTorch reference definitions of gradlab's models (see issue #2 and
server/engine/models.h). Construction order matters: PyTorch's default initialisation
draws from the global generator module by module, so these build their layers in the
same order as the C++ modules do. Used by make_fixture.py and bench/, never by gradlab.
"""
import torch
from torch import nn
import torch.nn.functional as F


def _conv3x3(cin, cout, stride=1, bias=True):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=bias)


def _kaiming_normal_fan_in(model):
    # As the usual CIFAR ResNet code (and Caffe's MSRA filler): conv and linear weights.
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)


def _kaiming_normal(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SimpleCNN(nn.Module):
    def __init__(self, in_channels=3, height=32, width=32, num_classes=10, batch_norm=False):
        super().__init__()
        self.batch_norm = batch_norm
        widths = [in_channels, 32, 64, 128]
        for i in range(3):
            setattr(self, f"conv{i + 1}", _conv3x3(widths[i], widths[i + 1], bias=not batch_norm))
            if batch_norm:
                setattr(self, f"bn{i + 1}", nn.BatchNorm2d(widths[i + 1]))
        self.fc = nn.Linear(128 * (height // 4) * (width // 4), num_classes)

    def _block(self, i, x):
        x = getattr(self, f"conv{i}")(x)
        if self.batch_norm:
            x = getattr(self, f"bn{i}")(x)
        return F.relu(x)

    def forward(self, x):
        x = F.max_pool2d(self._block(1, x), 2)
        x = F.max_pool2d(self._block(2, x), 2)
        x = self._block(3, x)
        return self.fc(torch.flatten(x, 1))


DEEP_CNN_CHANNELS = [64, 64, 64, 64, 64, 128, 128, 128, 256, 256]
DEEP_CNN_POOL_AFTER = {5, 8}


class DeepCNN(nn.Module):
    def __init__(self, in_channels=3, num_classes=10, batch_norm=False):
        super().__init__()
        self.batch_norm = batch_norm
        cin = in_channels
        for i, cout in enumerate(DEEP_CNN_CHANNELS, start=1):
            setattr(self, f"conv{i}", _conv3x3(cin, cout, bias=not batch_norm))
            if batch_norm:
                setattr(self, f"bn{i}", nn.BatchNorm2d(cout))
            cin = cout
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        for i in range(1, len(DEEP_CNN_CHANNELS) + 1):
            x = getattr(self, f"conv{i}")(x)
            if self.batch_norm:
                x = getattr(self, f"bn{i}")(x)
            x = F.relu(x)
            if i in DEEP_CNN_POOL_AFTER:
                x = F.max_pool2d(x, 2)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    """Where the block changes shape, its shortcut is a strided 1x1 conv and BN
    ("projection", option B of He et al. 2016) or takes every second pixel and pads the new
    channels with zeros ("zero_pad", option A, as the usual CIFAR reference code does)."""

    def __init__(self, cin, cout, stride, batch_norm=True, skip=True, shortcut="projection"):
        super().__init__()
        self.batch_norm = batch_norm
        self.skip = skip
        self.stride = stride
        self.pad = cout - cin
        self.conv1 = _conv3x3(cin, cout, stride, bias=not batch_norm)
        if batch_norm:
            self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout, bias=not batch_norm)
        if batch_norm:
            self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if skip and shortcut == "projection" and (stride != 1 or cin != cout):
            layers = [nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            self.shortcut = nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(x)
        if self.batch_norm:
            out = self.bn1(out)
        out = F.relu(out)
        out = self.conv2(out)
        if self.batch_norm:
            out = self.bn2(out)
        if self.skip:
            if self.shortcut is not None:
                out = out + self.shortcut(x)
            elif self.stride != 1 or self.pad:
                short = x[:, :, ::self.stride, ::self.stride]
                out = out + F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
            else:
                out = out + x
        return F.relu(out)


class ResNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=10, batch_norm=True, skip=True):
        super().__init__()
        stem = [nn.Conv2d(in_channels, 64, kernel_size=3, padding=1, bias=not batch_norm)]
        if batch_norm:
            stem.append(nn.BatchNorm2d(64))
        stem.append(nn.ReLU(inplace=True))
        self.conv1 = nn.Sequential(*stem)
        cin = 64
        for i, (cout, stride) in enumerate([(64, 1), (128, 2), (256, 2)], start=1):
            blocks = [BasicBlock(cin, cout, stride, batch_norm, skip),
                      BasicBlock(cout, cout, 1, batch_norm, skip)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            cin = cout
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class CifarResNet(nn.Module):
    """He et al. 2016, section 4.2: 6n+2 weighted layers."""

    def __init__(self, depth=20, in_channels=3, num_classes=10, batch_norm=True, skip=True,
                 shortcut="zero_pad"):
        super().__init__()
        assert depth >= 8 and (depth - 2) % 6 == 0
        n = (depth - 2) // 6
        self.batch_norm = batch_norm
        self.conv1 = _conv3x3(in_channels, 16, bias=not batch_norm)
        if batch_norm:
            self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for i, (cout, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
            blocks = [BasicBlock(cin if b == 0 else cout, cout, stride if b == 0 else 1,
                                 batch_norm, skip, shortcut) for b in range(n)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            cin = cout
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        if self.batch_norm:
            x = self.bn1(x)
        x = F.relu(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class MLP(nn.Module):
    def __init__(self, in_features=784, num_classes=10, batch_norm=True):
        super().__init__()
        self.batch_norm = batch_norm
        self.fc1 = nn.Linear(in_features, 256)
        self.fc2 = nn.Linear(256, 128)
        if batch_norm:
            self.bn2 = nn.BatchNorm1d(128)
        self.fc3 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        x = self.fc2(x)
        if self.batch_norm:
            x = self.bn2(x)
        return self.fc3(F.relu(x))


def build(model, in_channels=3, height=32, width=32, num_classes=10, batch_norm=None,
          skip_connections=None, init="pytorch_default", depth=20, shortcut="zero_pad"):
    """Builds a model as gradlab's BuildModel does (seed it first)."""
    if batch_norm is None:
        batch_norm = model in ("resnet", "cifar_resnet", "mlp")
    if model == "simple_cnn":
        net = SimpleCNN(in_channels, height, width, num_classes, batch_norm)
    elif model == "deep_cnn":
        net = DeepCNN(in_channels, num_classes, batch_norm)
    elif model == "resnet":
        net = ResNet(in_channels, num_classes, batch_norm,
                     True if skip_connections is None else skip_connections)
    elif model == "cifar_resnet":
        net = CifarResNet(depth, in_channels, num_classes, batch_norm,
                          True if skip_connections is None else skip_connections, shortcut)
    elif model == "mlp":
        net = MLP(in_channels * height * width, num_classes, batch_norm)
    else:
        raise ValueError(model)
    if init == "kaiming_normal":
        _kaiming_normal(net)
    elif init == "kaiming_normal_fan_in":
        _kaiming_normal_fan_in(net)
    return net
