"""``fastconv bench``: the reference workload, fastconv against the peers installed, in one process.

For each case every implementation runs once to warm up, then ``--repeats`` rounds time one
call of each, interleaved, each after 0.15 s of untimed calls of the same implementation (the
peers' thread pools spin after a call and would otherwise slow the next implementation), and
the medians are compared. A gradient case also times fastconv's forward pass of its layer in
the same rounds, so that gradient / forward compares the same minutes. fastconv's and torch's
float32 results are checked against torch's float64 result (relative L2 error), fastconv's
peak extra memory is traced, and the table, a JSON file and a PNG chart are written. Timings
on a shared machine are noisy: compare ratios, not times, and run twice.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import sys
from pathlib import Path

import numpy as np

from ._bench_peers import FORWARD, Case, contenders, float64_result
from ._measure import cpu_model, interleaved_times, median, peak_traced_bytes

PEERS = ("torch", "onnxruntime", "numpy-im2col")
#: Seconds of untimed calls before each timed one (at least one call): each implementation is timed
#: as in a loop of its own calls, after another library's threads have stopped spinning (OpenBLAS's,
#: behind numpy-im2col, spin ~0.1 s; see ``_measure.interleaved_times``).
SETTLE_SECONDS = 0.15
_REPO = Path(__file__).resolve().parents[1]
#: Where the suite is looked for when --suite is not given: the shared workload, then the repository's copy.
SUITE_PATHS = (_REPO.parent / "shared" / "bench" / "suite.py", _REPO / "benchmarks" / "suite.py")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", type=Path, default=None,
                        help=f"suite file with CASES (default: the first of {', '.join(map(str, SUITE_PATHS))})")
    parser.add_argument("--cases", nargs="*", default=[], help="run only cases whose name contains one of these")
    parser.add_argument("--threads", type=int, default=None, help="threads for every implementation (default: all cores)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per case (default 5); medians are reported")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for bench.json and bench.png (default benchmarks/out or ./fastconv-bench)")
    parser.add_argument("--algorithm", default=None, help="force one fastconv algorithm (cases it declines are skipped)")
    parser.add_argument("--planner", choices=("heuristic", "measure"), default="heuristic",
                        help="fastconv's planner mode (measure: time the candidates first, untimed)")
    parser.add_argument("--no-peers", action="store_true", help="time fastconv only (ratios need torch)")


def load_cases(path: Path | None) -> tuple[Path, list[Case]]:
    """The suite's CASES as :class:`Case` objects, and the file they came from."""
    if path is None:
        path = next((p for p in SUITE_PATHS if p.is_file()), None)
        if path is None:
            raise ValueError(f"fastconv bench: no suite found at {', '.join(map(str, SUITE_PATHS))}; pass --suite PATH")
    spec = importlib.util.spec_from_file_location("fastconv_bench_suite", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, [Case(name, op, tuple(x), tuple(w), dict(kw)) for name, op, x, w, kw in module.CASES]


def machine() -> dict:
    import numpy
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__, "platform": platform.platform()}


def run_case(case: Case, threads: int, repeats: int, algorithm: str | None, peers: bool) -> dict:
    """Times (median seconds) per implementation, fastconv's (and torch's) error vs a float64 result, fastconv's
    memory and algorithm."""
    calls, skipped = contenders(case, threads, algorithm)
    if not peers:
        calls = {k: v for k, v in calls.items() if k in ("fastconv", FORWARD)}
    row = {"name": case.name, "op": case.op, "x": case.x, "w": case.w, "kwargs": case.kwargs,
           "gflop": case.flops() / 1e9, "skipped": skipped, "times": {}, "samples": {}}
    if "fastconv" in calls:
        row["algorithm"] = case.plan(algorithm).choice.label
        try:
            result = calls["fastconv"]()
            if "torch" in calls:
                exact = float64_result(case, threads)
                row["rel_error"] = relative_error(result, exact)
                row["torch_rel_error"] = relative_error(calls["torch"](), exact)
            row["output_mb"] = result.nbytes / 2**20
            del result
            row["peak_extra_mb"] = max(0.0, peak_traced_bytes(calls["fastconv"]) / 2**20 - row["output_mb"])
        except Exception as exc:  # a broken algorithm must not stop the benchmark; it shows in the table
            row["skipped"]["fastconv"] = f"failed: {type(exc).__name__}: {exc}"
            del calls["fastconv"]
    samples = interleaved_times(calls, repeats, settle=SETTLE_SECONDS)
    row["samples"] = samples
    row["times"] = {name: median(s) for name, s in samples.items()}
    return row


def relative_error(result: np.ndarray, exact: np.ndarray) -> float:
    """Relative L2 error."""
    return float(np.linalg.norm(result - exact) / np.linalg.norm(exact))


def ratios(row: dict) -> dict:
    t = row["times"]
    out = {}
    if "fastconv" in t:
        if "torch" in t:
            out["vs_torch"] = t["fastconv"] / t["torch"]
        if "onnxruntime" in t:
            out["vs_onnxruntime"] = t["fastconv"] / t["onnxruntime"]
        peers = {k: v for k, v in t.items() if k in PEERS}
        if peers:
            best = min(peers, key=peers.get)
            out["best_peer"], out["vs_best_peer"] = best, t["fastconv"] / peers[best]
    return out


def geomean(values) -> float | None:
    values = [v for v in values if v is not None]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summary(rows: list[dict]) -> dict:
    r = [ratios(row) for row in rows]
    return {key: geomean(x.get(key) for x in r) for key in ("vs_torch", "vs_onnxruntime", "vs_best_peer")} | {
        "cases_over_1.3_vs_torch": [row["name"] for row, x in zip(rows, r) if x.get("vs_torch", 0) > 1.3],
        "gradient_over_forward": gradient_over_forward(rows)}


def gradient_over_forward(rows: list[dict]) -> dict[str, float]:
    """fastconv's time of each gradient case / its time on the same layer's forward pass, timed in
    the same rounds (``_bench_peers.FORWARD``)."""
    return {r["name"]: r["times"]["fastconv"] / r["times"][FORWARD] for r in rows
            if "fastconv" in r["times"] and FORWARD in r["times"]}


def _ms(t: float | None) -> str:
    return "-" if t is None else f"{t * 1e3:.2f}"


def table(rows: list[dict]) -> str:
    """The results as a Markdown table, with geometric means."""
    head = ("case", "algorithm", "fastconv ms", *(f"{p} ms" for p in PEERS), "GFLOP/s", "fc/torch", "fc/ORT",
            "fc/best peer", "extra MB", "error", "torch error")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        t, r = row["times"], ratios(row)
        gflops = f"{row['gflop'] / t['fastconv']:.3g}" if "fastconv" in t else "-"
        cells = (row["name"], row.get("algorithm", row["skipped"].get("fastconv", "-"))[:40], _ms(t.get("fastconv")),
                 *(_ms(t.get(p)) for p in PEERS), gflops,
                 *(f"{r[k]:.2f}" if k in r else "-" for k in ("vs_torch", "vs_onnxruntime")),
                 f"{r['vs_best_peer']:.2f} ({r['best_peer']})" if "vs_best_peer" in r else "-",
                 f"{row['peak_extra_mb']:.0f}" if "peak_extra_mb" in row else "-",
                 *(f"{row[k]:.1e}" if k in row else "-" for k in ("rel_error", "torch_rel_error")))
        lines.append("| " + " | ".join(cells) + " |")
    s = summary(rows)
    lines.append("| **geometric mean** | | | | | | | " + " | ".join(
        f"**{s[k]:.2f}**" if s[k] is not None else "-" for k in ("vs_torch", "vs_onnxruntime", "vs_best_peer"))
        + " | | | |")
    return "\n".join(lines)


def chart(rows: list[dict], path: Path, title: str) -> bool:
    """A bar chart of time / torch's time per case and implementation (log scale). False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in rows if "torch" in r["times"]]
    names = ["fastconv", "onnxruntime", "numpy-im2col"]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.5))
    height = 0.8 / len(names)
    for i, name in enumerate(names):
        ys = [j + i * height for j in range(len(rows))]
        vals = [r["times"].get(name, math.nan) / r["times"]["torch"] for r in rows]
        ax.barh(ys, vals, height=height, label=name)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(rows))], [r["name"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time / torch time (lower is faster)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _progress(items, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, file=sys.stderr, leave=False)


def run(args: argparse.Namespace) -> int:
    import fastconv
    suite, cases = load_cases(args.suite)
    if args.cases:
        cases = [c for c in cases if any(s in c.name for s in args.cases)]
        if not cases:
            print(f"fastconv bench: no case name contains any of {args.cases}", file=sys.stderr)
            return 2
    fastconv.set_num_threads(args.threads)
    import numba  # noqa: F401  # steady state: the planner's cold-start rule (numba not yet started) is not measured
    threads = fastconv.get_num_threads()
    fastconv.set_planner_mode(args.planner)
    rows = []
    bar = _progress(cases, "bench")
    for case in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(case.name)
        rows.append(run_case(case, threads, args.repeats, args.algorithm, not args.no_peers))
    out = args.out or (Path("benchmarks/out") if Path("benchmarks").is_dir() else Path("fastconv-bench"))
    out.mkdir(parents=True, exist_ok=True)
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "suite": str(suite), "threads": threads,
            "repeats": args.repeats, "planner": args.planner, "algorithm": args.algorithm,
            "fastconv": fastconv.__version__, "machine": machine(), "peers": _peer_versions()}
    title = f"{info['machine']['cpu']}, {threads} thread(s), {info['date']}"
    print(f"# fastconv bench: {title}\n# peers: {info['peers']}\n")
    print(table(rows))
    s = summary(rows)
    print(f"\ngeometric mean fastconv/torch {s['vs_torch'] or float('nan'):.3f}, "
          f"fastconv/onnxruntime {s['vs_onnxruntime'] or float('nan'):.3f}, "
          f"fastconv/best peer {s['vs_best_peer'] or float('nan'):.3f}; "
          f"cases above 1.3x torch: {s['cases_over_1.3_vs_torch'] or 'none'}")
    if s["gradient_over_forward"]:
        print("gradient / forward time of the same layer: "
              + ", ".join(f"{k} {v:.2f}" for k, v in s["gradient_over_forward"].items()))
    for row in rows:
        for name, why in row["skipped"].items():
            if name == "fastconv":
                print(f"  {row['name']}: fastconv {why}")
    (out / "bench.json").write_text(json.dumps({**info, "summary": s, "cases": rows}, indent=1, default=str))
    drawn = chart(rows, out / "bench.png", title)
    print(f"\nwrote {out / 'bench.json'}" + (f" and {out / 'bench.png'}" if drawn else " (no matplotlib: no chart)"))
    return 0


def _peer_versions() -> dict[str, str]:
    versions = {}
    for module in ("torch", "onnxruntime"):
        if module in sys.modules or importlib.util.find_spec(module):
            try:
                versions[module] = importlib.import_module(module).__version__
            except ImportError:
                pass
    import numpy
    versions["numpy"] = numpy.__version__
    return versions
