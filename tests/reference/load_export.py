"""Loads a model that `gradlab export` wrote into the equivalent PyTorch module.

usage: /usr/bin/python3 tests/reference/load_export.py FILE MODEL [IN_CHANNELS HEIGHT WIDTH]

torch.load must return a dict of tensors whose keys and shapes are exactly those of the
module's state_dict (load_state_dict with strict=True); prints one line describing it.
Used by tests/cli_e2e_test.cc, never by gradlab.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402


def main():
    path, model_name = sys.argv[1], sys.argv[2]
    shape = [int(v) for v in sys.argv[3:6]] or [3, 32, 32]
    state = torch.load(path)
    if not isinstance(state, dict):
        sys.exit(f"{path}: torch.load gave a {type(state).__name__}, not a dict")
    module = models.build(model_name, in_channels=shape[0], height=shape[1], width=shape[2])
    module.load_state_dict(state, strict=True)
    module.eval()
    with torch.no_grad():
        logits = module(torch.zeros(1, *shape))
    total = sum(t.numel() for t in state.values())
    print(f"loaded {len(state)} tensors, {total} values into {model_name}; "
          f"logits shape {list(logits.shape)}")


if __name__ == "__main__":
    main()
