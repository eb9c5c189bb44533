"""`python -m experiments.bench [name ...]`: run the benchmarks and append to results.md.

Each benchmark module exposes run(repeats) -> dict and measures its own reference in the same run.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
from pathlib import Path

import torch

BENCHMARKS = ["jedi_step", "student_bptt", "fixed_points", "renderer", "adapt_step", "trial_scaling"]
RESULTS = Path(__file__).with_name("results.md")


def machine() -> str:
    return (f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=BENCHMARKS)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## {stamp} — {machine()}\n"]
    for name in args.names:
        try:
            module = importlib.import_module(f"experiments.bench.{name}")
        except ModuleNotFoundError as err:
            print(f"{name}: not available ({err})")
            continue
        result = module.run(repeats=args.repeats)
        print(json.dumps(result))
        lines.append(f"- `{name}`: `{json.dumps(result)}`")
    with RESULTS.open("a") as f:
        f.write("\n".join(lines) + "\n")
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
