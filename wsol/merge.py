"""``python -m wsol.merge --out DIR SHARD_DIR...``: one run folder from the shards of one evaluation.

Each shard (``shard.index=i shard.count=n``, e.g. one SLURM array task or one torchrun rank) keeps
its per-batch partial results; merging them gives exactly the metrics of a single run.
"""

from __future__ import annotations

import argparse
import os
import sys

import yaml

from .errors import WsolError
from .pipeline import merge_shards
from .run import write_outputs

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsol.merge", description=__doc__)
    parser.add_argument("shards", nargs="+", help="the run folders of the shards")
    parser.add_argument("--out", required=True, help="the merged run folder to write")
    args = parser.parse_args(argv)
    try:
        meta, result = merge_shards([os.path.join(d, "partials") for d in args.shards])
        with open(os.path.join(args.shards[0], "config.yaml")) as f:
            config = yaml.safe_load(f)
    except (WsolError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    config["shard"] = {"index": 0, "count": 1}
    write_outputs(args.out, config, result)


if __name__ == "__main__":
    main()
