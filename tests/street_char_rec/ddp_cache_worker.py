"""One rank of the street cache test under torchrun (gloo): read the training images and map their cache; rank 0
decodes them, the other rank waits at the barrier and maps the same file. Writes ``<out>/rank<r>.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch.distributed as dist

from common import distributed
from competitions.street_char_rec.cache import Resize
from competitions.street_char_rec.competition import StreetCompetition


def main(data_dir: str, out: str) -> None:
    data = StreetCompetition().load_train(Path(data_dir))
    cache = data.X.cache_file(Resize(16, 32))
    images = np.load(cache, mmap_mode="r")
    result = {
        "cache": str(cache),
        "shape": list(images.shape),
        "checksum": int(np.asarray(images, np.int64).sum()),
    }
    Path(out, f"rank{distributed.rank()}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
