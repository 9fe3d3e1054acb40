"""Run under torchrun: train with tsn_train.fit and save this rank's final weights.

    python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_fit.py OUT -- <fit options>
"""
import os
import sys
from pathlib import Path

import torch

from tsn_train.cli import main

if __name__ == "__main__":
    out = Path(sys.argv[1])
    result = main.main(["fit", *sys.argv[3:]], standalone_mode=False)
    rank = int(os.environ["RANK"])
    model = result.model
    torch.save({"state": model.state_dict(), "history": result.history}, out / f"rank{rank}.pt")
