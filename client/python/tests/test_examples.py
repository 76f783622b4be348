"""Both examples, end to end on small data, against the real gradlabd."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def run_example(name, *args):
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_own_model_trains_exports_and_evaluates_in_pytorch(gradlabd):
    pytest.importorskip("torch")
    out = run_example("own_model.py", "--server", gradlabd.address, "--epochs", "1",
                      "--train", "1024", "--test", "512")
    assert "uploaded small_cnn: " in out
    assert "epoch 1: train loss " in out
    found = re.search(r"reloaded epoch 1 in PyTorch: ([\d.]+)% of 512 test images "
                      r"\(the server: ([\d.]+)%\)", out)
    assert found, out
    assert found.group(1) == found.group(2), "PyTorch scores the export as the server did"


def test_the_sweep_prints_its_cells_and_draws_them(gradlabd, tmp_path):
    png = tmp_path / "sweep.png"
    out = run_example("sweep.py", "--server", gradlabd.address, "--epochs", "1", "--seeds", "1",
                      "--train", "256", "--test", "128", "--png", str(png))
    assert "4 cells x 1 seeds, 4 runs" in out
    assert "4 of 4 runs done" in out
    assert len(re.findall(r"test accuracy +[\d.]+% \+- 0.00 \(n=1\)", out)) == 4, out
    if importlib.util.find_spec("matplotlib") is None:
        assert "matplotlib is not installed" in out
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
