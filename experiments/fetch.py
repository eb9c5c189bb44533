"""Download public reach datasets with the DANDI client.

    python -m experiments.fetch mc_maze [--dest DIR]      # also mc_maze_small / _medium / _large

The files land in DIR (default: $DATA_DIR, else ./data) as <dandiset>/sub-Jenkins/...nwb; the command
prints the `data.source.path=` override to train on them. Needs `pip install dandi` (extra "fetch")
and network access; it says so clearly when either is missing.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

# name -> (DANDI id with the NLB release version, session tag of the train file)
DATASETS = {
    "mc_maze": ("000128/0.220113.0400", "full"),
    "mc_maze_large": ("000138/0.220113.0407", "large"),
    "mc_maze_medium": ("000139/0.220113.0408", "medium"),
    "mc_maze_small": ("000140/0.220113.0408", "small"),
}


def train_file(dest: Path, name: str) -> Path:
    """Where the NLB train file of ``name`` lies after the download."""
    dandiset, session = DATASETS[name]
    return dest / dandiset.split("/")[0] / "sub-Jenkins" / f"sub-Jenkins_ses-{session}_desc-train_behavior+ecephys.nwb"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--dest", type=Path, default=Path(os.environ.get("DATA_DIR", "data")),
                        help="output folder (default: $DATA_DIR or ./data)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("dandi") is None:
        print("The DANDI client is not installed. Install it with `pip install dandi` "
              "(or `pip install -e .[nwb]`), then rerun this command.", file=sys.stderr)
        return 2
    from dandi.download import download

    dandiset, _ = DATASETS[args.dataset]
    url = f"DANDI:{dandiset}"
    args.dest.mkdir(parents=True, exist_ok=True)
    print(f"downloading {args.dataset} ({url}) into {args.dest.resolve()} ...")
    try:
        download(url, args.dest)
    except Exception as err:  # the client raises many network / HTTP error types
        print(f"Download of {url} failed ({type(err).__name__}: {err}). Check the network connection and that "
              f"https://dandiarchive.org is reachable, then rerun.", file=sys.stderr)
        return 1
    path = train_file(args.dest, args.dataset)
    print(f"done. Train with:\n  python -m experiments.train experiment=jedi/monkey_reach data=jedi/mc_maze "
          f"data.source.path={path.resolve()}\n(set model.infer.heldout_neurons to the held-out fraction the loader "
          f"logs, e.g. 45/182 = 0.2473 for mc_maze)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
