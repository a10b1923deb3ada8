"""Classifier throughput: messages/s and MB/s over a folder of messages.

Usage: python benchmarks/classify.py [DIR | labels.jsonl] [--repeat N] [--profile [--sort KEY]]

DIR is searched recursively (every regular file except *.jsonl / *.md); a
labels.jsonl names the files to read.  Default: ../shared/corpus/dev.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ndr_sweeper.classify import classify

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "dev"


def load(target: Path) -> list[bytes]:
    if target.is_file() and target.suffix == ".jsonl":
        base = target.parent
        return [
            (base / json.loads(line)["path"]).read_bytes()
            for line in target.read_text().splitlines()
            if line.strip()
        ]
    return [
        p.read_bytes()
        for p in sorted(target.rglob("*"))
        if p.is_file() and p.suffix not in (".jsonl", ".md") and not p.name.startswith(".")
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", choices=("cumulative", "tottime"), default="cumulative")
    args = ap.parse_args()
    msgs = load(Path(args.target))
    if not msgs:
        print(f"no messages under {args.target}", file=sys.stderr)
        return 1
    size = sum(len(m) for m in msgs)
    if args.profile:
        import cProfile
        import pstats

        cProfile.runctx(
            "for m in msgs: classify(m)", globals(), {"msgs": msgs}, "/tmp/classify.prof"
        )
        pstats.Stats("/tmp/classify.prof").sort_stats(args.sort).print_stats(30)
        return 0
    times: list[float] = []
    ndrs = 0
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        ndrs = sum(classify(m).is_ndr for m in msgs)
        times.append(time.perf_counter() - t0)
    best = min(times)
    median = statistics.median(times)
    print(
        f"{len(msgs)} messages, {size / 1e6:.1f} MB, {ndrs} NDRs: best of {len(times)} "
        f"{best:.3f} s = {len(msgs) / best:,.0f} messages/s, {size / 1e6 / best:.1f} MB/s; "
        f"median {len(msgs) / median:,.0f} messages/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
