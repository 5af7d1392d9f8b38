"""``fastconv volume in.zarr out.zarr --kernel gaussian:1.5``: convolve a zarr volume larger than memory.

The volume is read, convolved and written block by block on Dask workers (a local cluster whose
workers get ``--memory-limit`` each, or a running scheduler), so the memory in use is a few blocks
per worker, whatever the volume's size. Prints a progress bar and the workers' peak memory.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time

import numpy as np

from ._cli_explain import _param


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="zarr array: a 3-D volume (D, H, W) or channels first (C, D, H, W)")
    parser.add_argument("output", help="zarr array to write (replaced if it exists)")
    parser.add_argument("--kernel", default="box:3",
                        help="'box:K' (mean over K^3), 'gaussian:SIGMA' (both per channel), or a .npy weight "
                             "(C_out, C_in/groups, kd, kh, kw); default box:3")
    for name, default in (("stride", 1), ("padding", "same"), ("dilation", 1)):
        parser.add_argument(f"--{name}", type=_param, default=default, help=f"as conv3d (default {default})")
    parser.add_argument("--groups", type=int, default=1, help="for a .npy weight (default 1)")
    parser.add_argument("--chunks", type=int, default=None,
                        help="edge of the cubic result blocks, one task each (default: the input's zarr chunks)")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (default: a local "
                                                           "cluster of --workers processes)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--memory-limit", default="1GB", help="per local worker, e.g. 300MB (default 1GB)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def kernel_weight(spec: str, channels: int, dtype, groups: int = 1) -> tuple[np.ndarray, int]:
    """``(weight, groups)`` for ``--kernel``: a per-channel (depthwise) box or Gaussian, or the weight in a
    .npy file, used with ``groups``."""
    kind, _, value = spec.partition(":")
    if kind == "box":
        size = int(value or 3)
        taps = np.full(size, 1.0 / size)
    elif kind == "gaussian":
        sigma = float(value or 1.0)
        radius = math.ceil(3 * sigma)
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        taps /= taps.sum()
    else:
        return np.load(spec).astype(dtype, copy=False), groups
    cube = taps[:, None, None] * taps[None, :, None] * taps[None, None, :]
    return np.broadcast_to(cube.astype(dtype), (channels, 1, *cube.shape)).copy(), channels


def convolve_volume(client, input_path: str, output_path: str, weight: np.ndarray, *, groups: int = 1,
                    stride=1, padding="same", dilation=1, chunks: int | None = None,
                    progress: bool = True) -> dict:
    """Convolve the zarr array ``input_path`` into ``output_path`` on ``client``'s workers.

    Each output block reads its own window (halo included) from the input store and is written as
    soon as it is computed, so a worker holds a few blocks at a time. Returns the shapes, bytes,
    seconds, each worker's peak resident memory (bytes), and whether a worker was restarted on the
    way (as it would be after exceeding its memory limit).
    """
    import zarr
    from distributed import progress as progress_bar

    from .dask import conv_store

    source = zarr.open_array(input_path, mode="r")
    if source.ndim not in (3, 4):
        raise ValueError(f"fastconv volume: {input_path} has shape {source.shape}; expected (D, H, W) or (C, D, H, W)")
    # the result is chunked like the input; each block reads its window (a stored chunk per stride^3, plus
    # the halo), so larger blocks re-read proportionally less of their neighbours' chunks
    y = conv_store(source, weight, stride=stride, padding=padding, dilation=dilation, groups=groups,
                   chunks=chunks or source.chunks[-3:])
    if source.ndim == 3 and y.shape[0] == 1:
        y = y[0]
    pids = client.run(os.getpid)
    start = time.perf_counter()
    future = client.compute(y.to_zarr(output_path, overwrite=True, compute=False))
    if progress:
        progress_bar(future)
    future.result()
    seconds = time.perf_counter() - start
    return {
        "input_shape": source.shape, "output_shape": y.shape, "input_bytes": source.nbytes,
        "output_bytes": y.nbytes, "seconds": seconds, "peak_worker_bytes": client.run(_peak_rss),
        "workers_restarted": client.run(os.getpid) != pids,
    }


def _peak_rss() -> int:
    """Peak resident bytes of this process since it started (Linux VmHWM; ru_maxrss would include
    the parent's peak, inherited across the fork and exec that start a worker)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run(args: argparse.Namespace) -> int:
    import zarr
    from dask.utils import parse_bytes
    from distributed import Client

    source = zarr.open_array(args.input, mode="r")
    weight, groups = kernel_weight(args.kernel, source.shape[0] if source.ndim == 4 else 1, source.dtype, args.groups)
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        # a worker's scratch (im2col columns, transforms) gets an eighth of its memory, and each of its
        # threads computes one block single-threaded: no oversubscription of the cores
        workspace_mb = max(parse_bytes(args.memory_limit) // 8 // 2**20, 16)
        client = Client(n_workers=args.workers, threads_per_worker=args.threads_per_worker, processes=True,
                        memory_limit=args.memory_limit, host="127.0.0.1", dashboard_address=None,
                        env={"FASTCONV_WORKSPACE_MB": str(workspace_mb), "FASTCONV_NUM_THREADS": "1"})
    with client:
        summary = convolve_volume(client, args.input, args.output, weight, groups=groups,
                                  stride=args.stride, padding=args.padding, dilation=args.dilation,
                                  chunks=args.chunks, progress=args.progress)
    peaks = ", ".join(f"{p / 2**20:.0f}" for p in summary["peak_worker_bytes"].values())
    print(f"\n{args.input} {summary['input_shape']} -> {args.output} {summary['output_shape']}: "
          f"{summary['input_bytes'] / 2**30:.2f} GiB in {summary['seconds']:.1f} s; "
          f"peak worker memory {peaks} MiB"
          + ("" if args.scheduler else f" (limit {args.memory_limit} each)")
          + ("; a worker was restarted" if summary["workers_restarted"] else ""))
    return 0
