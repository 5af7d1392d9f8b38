"""Render the tables of benchmarks/RESULTS.md from ``fastconv bench`` JSON files.

    python benchmarks/report.py RUN1.json RUN2.json [--single ST1.json ST2.json] [--quality Q1.json ...]

RUN1 gives the full table; RUN2 (the same suite, run again) shows the noise: ratios side by
side. ``--single`` adds the single-threaded runs, ``--quality`` the planner-quality results
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
from fastconv._cli_bench import ratios, summary, table

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


def _ratio_cell(row: dict | None, key: str) -> str:
    r = ratios(row) if row else {}
    return f"{r[key]:.2f}" if key in r else "-"


def noise_table(runs: list[dict]) -> str:
    names = [row["name"] for row in runs[0]["cases"]]
    by_name = [{row["name"]: row for row in run["cases"]} for run in runs]
    head = ["case", "algorithm"] + [f"fc/torch run {i + 1}" for i in range(len(runs))] + \
        [f"fc/ORT run {i + 1}" for i in range(len(runs))] + [f"fc/best peer run {i + 1}" for i in range(len(runs))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        rows = [b.get(name) for b in by_name]
        cells = [name, rows[0].get("algorithm", "-")]
        for key in ("vs_torch", "vs_onnxruntime", "vs_best_peer"):
            cells += [_ratio_cell(r, key) for r in rows]
        lines.append("| " + " | ".join(cells) + " |")
    sums = [summary(run["cases"]) for run in runs]
    cells = ["**geometric mean**", ""]
    for key in ("vs_torch", "vs_onnxruntime", "vs_best_peer"):
        cells += [f"**{s[key]:.2f}**" if s[key] else "-" for s in sums]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(run: dict, single: dict | None) -> str:
    s = summary(run["cases"])
    by_name = {row["name"]: ratios(row) for row in run["cases"]}
    lines = []
    for label, key, target in GOALS:
        value = s[key]
        lines.append(f"- {label}: **{value:.2f}** (target <= {target}) {'met' if value <= target else 'MISSED'}"
                     if value else f"- {label}: not measured")
    worst = max(((r.get("vs_torch", 0), n) for n, r in by_name.items()), default=(0, ""))
    lines.append(f"- worst case vs torch: {worst[1]} **{worst[0]:.2f}** (target: no case above 1.3) "
                 f"{'met' if worst[0] <= 1.3 else 'MISSED'}; above 1.3: {s['cases_over_1.3_vs_torch'] or 'none'}")
    for name, factor in (("replknet.dw31x31", 10), ("unet3d.up2x2x2s2", 2)):
        if "vs_torch" in by_name.get(name, {}):
            speedup = 1 / by_name[name]["vs_torch"]
            lines.append(f"- {name}: **{speedup:.1f}x** faster than torch (target >= {factor}x) "
                         f"{'met' if speedup >= factor else 'MISSED'}")
    if s["gradient_over_forward"]:
        worst_grad = max(s["gradient_over_forward"].values())
        lines.append("- gradient / forward time of the same layer: " + ", ".join(
            f"{k} {v:.2f}" for k, v in s["gradient_over_forward"].items())
                     + f" (target <= 1.5) {'met' if worst_grad <= 1.5 else 'MISSED'}")
    if single:
        value = summary(single["cases"])["vs_torch"]
        lines.append(f"- single-threaded geometric mean fastconv/torch: **{value:.2f}** (target <= 0.9) "
                     f"{'met' if value <= 0.9 else 'MISSED'}")
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
    print(f"Machine: {_lscpu()}. Peers: {first['peers']}. fastconv {first['fastconv']}, "
          f"{first['threads']} thread(s), {first['repeats']} interleaved rounds per case, medians; "
          f"planner: {first['planner']}. Runs: {', '.join(r['date'] for r in runs)}.\n")
    print("### Goals\n")
    print(goals(first, single[0] if single else None) + "\n")
    print(f"### Run 1 ({first['date']})\n")
    print(table(first["cases"]) + "\n")
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
