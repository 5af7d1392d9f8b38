"""Render the tables of benchmarks/RESULTS.md from ``fastconv bench`` JSON files.

    python benchmarks/report.py RUN1.json RUN2.json [--single ST1.json ST2.json] [--quality Q1.json ...]

The last run gives the full table; all of them (the same suite, run again) show the noise:
ratios side by side, and their per-case medians. ``--single`` adds the single-threaded runs, ``--quality`` the planner-quality results
(benchmarks/planner_quality.py --json; several runs are combined). Prose (what falls short and why) is written by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path

import numpy as np

import planner_quality
from fastconv._cli_bench import geomean, ratios, summary, table

#: (label, summary key, largest value that meets the goal)
GOALS = [("geometric mean fastconv/torch", "vs_torch", 0.7), ("geometric mean fastconv/ONNX Runtime", "vs_onnxruntime", 1.3)]


def _lscpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu unavailable"
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L2 cache", "L3 cache")
    return "; ".join(line.split(":", 1)[0] + ": " + line.split(":", 1)[1].strip()
                     for line in out.splitlines() if line.split(":", 1)[0].strip() in keep)


def noise_table(runs: list[dict]) -> str:
    """fc/torch and fc/ORT per run and their medians over the runs; fc/best peer as the median only."""
    names = [row["name"] for row in runs[0]["cases"]]
    by_name = [{row["name"]: ratios(row) for row in run["cases"]} for run in runs]
    n = len(runs)
    head = (["case", "algorithm"] + [f"fc/torch {i + 1}" for i in range(n)] + ["fc/torch median"]
            + [f"fc/ORT {i + 1}" for i in range(n)] + ["fc/ORT median", "fc/best peer median"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    algorithms = {row["name"]: row.get("algorithm", "-") for row in runs[0]["cases"]}
    medians = {key: {} for key in ("vs_torch", "vs_onnxruntime", "vs_best_peer")}
    for name in names:
        cells = [name, algorithms[name]]
        for key in medians:
            values = [b[name][key] for b in by_name if key in b.get(name, {})]
            if values:
                medians[key][name] = statistics.median(values)
            if key != "vs_best_peer":
                cells += [f"{b[name][key]:.2f}" if key in b.get(name, {}) else "-" for b in by_name]
            cells.append(f"**{medians[key][name]:.2f}**" if name in medians[key] else "-")
        lines.append("| " + " | ".join(cells) + " |")
    sums = [summary(run["cases"]) for run in runs]
    cells = ["**geometric mean**", ""]
    for key in medians:
        if key != "vs_best_peer":
            cells += [f"{s[key]:.2f}" if s[key] else "-" for s in sums]
        cells.append(f"**{geomean(medians[key].values()):.2f}**" if medians[key] else "-")
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _verdict(values: list[float], ok) -> str:
    met = sum(map(ok, values))
    return ", ".join(f"{v:.2f}" for v in values) + f": met in {met} of {len(values)} runs"


def goals(runs: list[dict], single: list[dict]) -> str:
    """Each goal of the issue, with its value in every run."""
    sums = [summary(run["cases"]) for run in runs]
    by_name = [{row["name"]: ratios(row) for row in run["cases"]} for run in runs]
    lines = [f"- {label} (target <= {target}): " + _verdict([s[key] for s in sums], lambda v, t=target: v <= t)
             for label, key, target in GOALS if all(s[key] for s in sums)]
    worst = [max((r.get("vs_torch", 0), n) for n, r in b.items()) for b in by_name]
    lines.append("- worst case fastconv/torch (target <= 1.3): " + _verdict([w[0] for w in worst], lambda v: v <= 1.3)
                 + "; above 1.3: " + "; ".join(f"run {i + 1}: {', '.join(s['cases_over_1.3_vs_torch']) or 'none'}"
                                              for i, s in enumerate(sums)))
    for name, factor in (("replknet.dw31x31", 10), ("unet3d.up2x2x2s2", 2)):
        speedups = [1 / b[name]["vs_torch"] for b in by_name if "vs_torch" in b.get(name, {})]
        if speedups:
            lines.append(f"- {name} speed-up over torch (target >= {factor}x): "
                         + _verdict(speedups, lambda v, f=factor: v >= f))
    grads = [max(s["gradient_over_forward"].values()) for s in sums if s["gradient_over_forward"]]
    if grads:
        lines.append("- slowest gradient / forward time of the same layer (target <= 1.5): "
                     + _verdict(grads, lambda v: v <= 1.5))
    if single:
        lines.append("- single-threaded geometric mean fastconv/torch (target <= 0.9): "
                     + _verdict([summary(r["cases"])["vs_torch"] for r in single], lambda v: v <= 0.9))
    return "\n".join(lines)


def quality(runs: list[dict]) -> str:
    """The heuristic's pick vs the measured best per case, runs combined (median time per candidate)."""
    data = planner_quality.combine(runs)
    rows = data["cases"]
    r = [planner_quality._ratio(row, row["pick"]) for row in rows]
    lines = [f"{len(runs)} run(s) combined, {data['threads']} thread(s), calibration {data.get('calibration')}: "
             f"median pick/best **{statistics.median(r):.2f}** (target <= 1.2), 95th percentile "
             f"**{float(np.percentile(r, 95)):.2f}** (target <= 1.5), worst {max(r):.2f}, "
             f"best picked in {sum(x == 1.0 for x in r)} of {len(r)} cases.", "",
             "| case | heuristic pick | measured best | pick/best | measured ms (estimated ms) per candidate |",
             "|---|---|---|---|---|"]
    for row, ratio in zip(rows, r):
        times = row["measured_s"]
        detail = ", ".join(f"{label} {t * 1e3:.3g} ({row['estimated_s'][label] * 1e3:.3g})"
                           for label, t in sorted(times.items(), key=lambda kv: kv[1]))
        lines.append(f"| {row['case']} | {row['pick']} | {min(times, key=times.get)} | {ratio:.2f} | {detail} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--single", nargs="*", type=Path, default=[])
    parser.add_argument("--quality", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    runs = [json.loads(p.read_text()) for p in args.runs]
    single = [json.loads(p.read_text()) for p in args.single]
    first = runs[0]
    print(f"Run details (`report.py`): lscpu {_lscpu()}. Peers: {first['peers']}. fastconv {first['fastconv']}, "
          f"{first['threads']} thread(s), {first['repeats']} interleaved rounds per case, medians; "
          f"planner: {first['planner']}. Runs: {', '.join(r['date'] for r in runs)}.\n")
    print("### Goals\n")
    print(goals(runs, single) + "\n")
    latest = runs[-1]
    print(f"### The latest run ({latest['date']}): times, rates, memory, accuracy\n")
    print(table(latest["cases"]) + "\n")
    print("### Noise: the ratios of every run\n")
    print(noise_table(runs) + "\n")
    if single:
        print(f"### Single-threaded (both sides limited to one thread; {', '.join(r['date'] for r in single)})\n")
        print(noise_table(single) + "\n")
    if args.quality:
        print("### Planner heuristic vs measured best\n")
        print(quality([json.loads(p.read_text()) for p in args.quality]) + "\n")


if __name__ == "__main__":
    main()
