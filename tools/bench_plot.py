#!/usr/bin/env python3
"""Bar chart of each bench row's ratio to its run's ceiling, from `spmla bench --json` outputs.

Reads one or more files, each either the JSON that `spmla bench --json` prints, the merged
`bench-<backend>.json` that scripts/gpu-check writes, or gpu-check's `bench.log` (whose
`===== bench-*.json` sections are read). Draws one bar per (op, shape) and file, the row's
`ratio_to_peak`, and writes a PNG. Needs matplotlib (not a dependency of spmla itself).

    python3 tools/bench_plot.py run.json [more.json ...] -o bench.png [--title TEXT]
"""
import argparse
import json
import os
import re
import sys


def load_runs(path):
    """The bench runs in one file: a list of dicts with "rows" (and, where known, "device_name")."""
    with open(path) as f:
        text = f.read()
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        pass
    # gpu-check's bench.log: "===== bench-cuda.json" headers, each followed by one JSON document.
    runs = []
    parts = re.split(r"^===== (\S+)\n", text, flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2]):
        if re.fullmatch(r"bench-[A-Za-z0-9_]+\.json", name):
            try:
                runs.append(json.loads(body))
            except json.JSONDecodeError as e:
                raise SystemExit(f"bench_plot: {path}: section {name} is not JSON ({e})")
    if not runs:
        raise SystemExit(f"bench_plot: {path}: neither a `spmla bench --json` output nor a gpu-check bench.log")
    return runs


def label_of(path, run):
    device = run.get("device_name") or "?"
    backend = run.get("backend") or "?"
    return f"{os.path.basename(path)}: {backend}, {device}"


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Bar chart (PNG) of ratio to the same run's ceiling per bench row, from one or more "
        "`spmla bench --json` outputs (or gpu-check's bench-<backend>.json / bench.log).")
    ap.add_argument("inputs", nargs="+", metavar="JSON", help="bench output(s); one bar colour per run")
    ap.add_argument("-o", "--output", default="bench.png", help="PNG to write (default: bench.png)")
    ap.add_argument("--title", default=None, help="chart title (default: the runs' backends and devices)")
    args = ap.parse_args(argv)

    series = []  # (label, {(op, shape): ratio})
    for path in args.inputs:
        for run in load_runs(path):
            ratios = {}
            for row in run.get("rows", []):
                key = (row.get("op", "?"), row.get("shape", "?"))
                r = row.get("ratio_to_peak")
                if r is None:
                    print(f"bench_plot: {path}: {key[0]} {key[1]}: no ratio to a ceiling (left out)", file=sys.stderr)
                    continue
                ratios[key] = float(r)
            series.append((label_of(path, run), ratios))
    keys = []
    for _, ratios in series:
        keys += [k for k in ratios if k not in keys]
    if not keys:
        raise SystemExit("bench_plot: no row with a ratio to plot")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("bench_plot: matplotlib is not installed (pip install matplotlib); "
                         "it is needed only for this plot, not by spmla")

    n = len(series)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(keys) * max(1, n) + 2), 5.5))
    for i, (label, ratios) in enumerate(series):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(keys))]
        ys = [ratios.get(k, 0.0) for k in keys]
        bars = ax.bar(xs, ys, width, label=label)
        for b, k in zip(bars, keys):
            if k in ratios:
                ax.annotate(f"{ratios[k]:.2f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{op}\n{shape}" for op, shape in keys], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("ratio to the same run's ceiling (matmul or copy)")
    ax.set_title(args.title or "; ".join(label for label, _ in series), fontsize=9)
    ax.axhline(1.0, color="gray", linewidth=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120, bbox_inches="tight")
    print(f"bench_plot: wrote {args.output} ({len(keys)} rows, {n} run{'s' if n != 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
