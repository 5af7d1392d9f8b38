"""Timing helpers for the planner's measuring mode and the benchmark, and the store of measurements.

Timings on a shared machine are noisy, so candidates are timed *interleaved* (one call of
each per round, the order rotating) and compared by their median; the first call of each
is a warm-up (numba compilation or cache load, page faults) and is not counted.

The store keeps measured seconds per call signature in memory and, when asked, in a JSON
file in the user's cache directory. That file is valid for one library version and one CPU:
a file written by another version or on another CPU model is ignored and overwritten.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._geometry import ConvGeometry


def interleaved_times(calls: dict[str, Callable[[], object]], repeats: int, *, warmup: bool = True,
                      drop_slower_than: float | None = None, settle: float = 0.0) -> dict[str, list[float]]:
    """Seconds of ``repeats`` calls of each callable, interleaved round by round, after one warm-up call each
    (unless ``warmup=False``: the caller has made it).

    ``drop_slower_than`` (a factor) stops timing a callable once its first timed call is that
    many times slower than the fastest first call: it has lost, and timing it again wastes time.
    Untimed calls of the same callable precede each timed one for ``settle`` seconds (at least
    one call), so that it is timed in its steady state, as in a loop of its own calls, rather
    than right after another library's: OpenMP's (torch's libgomp spins ~17 ms), OpenBLAS's
    (~0.1 s) and ONNX Runtime's thread pools spin after a call, and on two cores that spinning
    slowed whichever implementation ran next by up to 2.5x (fastconv's wavenet.k2d64: 12 ms in
    a loop, 17 ms right after torch, 23 ms right after ONNX Runtime; torch's stem7x7s2: 9 ms in a
    loop, 29 ms after numpy's matmul).
    """
    for fn in calls.values() if warmup else ():
        fn()
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if settle:
                until = time.perf_counter() + settle
                calls[name]()
                while time.perf_counter() < until:
                    calls[name]()
            start = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - start)
        if r == 0 and drop_slower_than is not None:
            best = min(s[0] for s in samples.values())
            names = [n for n in names if samples[n][0] <= drop_slower_than * best]
    return samples


def race(calls: dict[str, Callable[[], object]], repeats: int, *, drop_slower_than: float = 4.0,
         compile_allowance: float = 1.0, settle: float = 0.0) -> tuple[dict[str, float], dict[str, str]]:
    """Median seconds per callable, and the error of each callable that raised.

    Each is called once untimed first (compilation, page faults; a broken one is caught here).
    One whose warm-up took longer than ``drop_slower_than`` times the fastest warm-up plus
    ``compile_allowance`` seconds is called once more (its first call may have compiled); if
    that call is still that slow, it has lost and that time stands, without further calls.
    The others are timed by :func:`interleaved_times` (``settle``: seconds of untimed calls
    before each timed one, for steady-state times).
    """
    warm, failures = {}, {}
    for label, fn in calls.items():
        start = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # a broken candidate must not break the caller; it is reported instead
            failures[label] = f"{type(exc).__name__}: {exc}"
            continue
        warm[label] = time.perf_counter() - start
    if not warm:
        return {}, failures
    limit = drop_slower_than * min(warm.values()) + compile_allowance
    lost = {}
    for label in [k for k, t in warm.items() if t > limit]:
        start = time.perf_counter()
        calls[label]()
        again = time.perf_counter() - start
        if again > drop_slower_than * min(warm.values()):
            lost[label] = again
    samples = interleaved_times({k: calls[k] for k in warm if k not in lost}, repeats, warmup=False,
                                drop_slower_than=drop_slower_than, settle=settle)
    return {label: median(s) for label, s in samples.items()} | lost, failures


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def peak_traced_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes NumPy (and Python) allocated during one call, beyond what existed before.

    Counts allocations NumPy reports to tracemalloc; memory numba allocates inside compiled
    code is not seen. The scratch kept between calls is freed first, so that the call's own
    scratch is counted rather than reused unseen.
    """
    from ._workspace import release_workspace
    release_workspace()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def synthetic_operands(geom: ConvGeometry, dtype: np.dtype, op: str) -> tuple[np.ndarray, np.ndarray]:
    """Random operands of ``op`` on ``geom``: (x, w), (dy, w) or (x, dy)."""
    shapes = {"forward": (geom.input_shape, geom.weight_shape), "input_grad": (geom.output_shape, geom.weight_shape),
              "weight_grad": (geom.input_shape, geom.output_shape)}[op]
    rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    arrays = []
    for shape in shapes:
        a = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        if dtype.kind == "c":
            a += 1j * rng.standard_normal(shape, dtype=np.float32)
        arrays.append(a)
    return arrays[0], arrays[1]


def cpu_model() -> str:
    """A string naming this CPU model and core count: measurements are only valid on it."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name} x{os.cpu_count()}"


def cache_file() -> Path:
    """``$FASTCONV_CACHE_DIR/plans.json``, else ``$XDG_CACHE_HOME/fastconv/plans.json`` (~/.cache by default)."""
    base = os.environ.get("FASTCONV_CACHE_DIR")
    if not base:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastconv"
    return Path(base) / "plans.json"


def _library_version() -> str:
    return getattr(sys.modules.get("fastconv"), "__version__", "unknown")


class MeasurementStore:
    """Measured seconds per call signature and candidate label, in memory and optionally on disk."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, float]] = {}
        self._loaded_from: Path | None = None

    def clear(self) -> None:
        """Forget every measurement held in memory (the disk file is left alone)."""
        self._entries.clear()
        self._loaded_from = None

    def get(self, key: str, persist: bool) -> dict[str, float]:
        if persist:
            self._load(cache_file())
        return self._entries.get(key, {})

    def put(self, key: str, times: dict[str, float], persist: bool) -> None:
        self._entries.setdefault(key, {}).update(times)
        if persist:
            self._save(cache_file(), key)

    def _stamp(self) -> dict[str, str]:
        return {"fastconv": _library_version(), "cpu": cpu_model()}

    def _read(self, path: Path) -> dict[str, dict[str, float]]:
        """The entries of a cache file written by this version on this CPU; {} otherwise."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or {k: data.get(k) for k in self._stamp()} != self._stamp():
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def _load(self, path: Path) -> None:
        if self._loaded_from == path:
            return
        for key, times in self._read(path).items():
            self._entries.setdefault(key, {}).update(times)
        self._loaded_from = path

    def _save(self, path: Path, key: str) -> None:
        # Merge with what other processes wrote meanwhile; replace atomically so readers never see half a file.
        entries = self._read(path)
        entries.setdefault(key, {}).update(self._entries[key])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**self._stamp(), "entries": entries}, indent=1, sort_keys=True))
        os.replace(tmp, path)
