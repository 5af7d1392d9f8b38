"""Throughput of convolution over a chunked Dask array on 2 local workers vs one in-memory call.

The same work both ways: the in-memory call gets the whole NumPy array and every core; the Dask
path gets the same values already chunked and held by 2 worker processes (1 thread each, as many cores
in all) and leaves the result there, chunked (``persist``): the steady state of a pipeline.
The time to also gather the result back into the client is reported beside it.

    python benchmarks/dask_throughput.py [--repeats 5] [--malloc-trim 1073741824]

Prints, per case, median seconds and the ratio in-memory time / Dask time (>= 0.8 is the target).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

#: name -> (input shape, weight shape, conv kwargs, chunks)
CASES = {  # each about a second in memory on 2 cores: dask's fixed costs (~50 ms a graph) stay small
    "resnet 3x3, batch chunks": ((128, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), (16, 64, 56, 56)),
    "large image, spatial chunks": ((1, 64, 1024, 1024), (64, 64, 3, 3), dict(padding=1), (1, 64, 256, 256)),
    "volume 3x3x3, spatial chunks": ((1, 8, 128, 192, 192), (8, 8, 3, 3, 3), dict(padding=1), (1, 8, 64, 96, 96)),
}


def _interleaved_medians(fns, repeats: int) -> list[float]:
    """Median seconds of each function, timed in turn so that machine noise hits them alike."""
    for fn in fns:
        fn()  # warm: planning, compilation, imports
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--malloc-trim", type=int, default=None, metavar="BYTES",
                        help="the workers' MALLOC_TRIM_THRESHOLD_ (distributed sets 65536, which returns "
                             "freed memory to the OS at once, so every large temporary page-faults anew)")
    args = parser.parse_args(argv)

    import dask
    import dask.array as da
    from distributed import Client, wait

    from fastconv.functional import conv

    if args.malloc_trim is not None:
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": args.malloc_trim})
    rng = np.random.default_rng(0)
    with Client(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, env={"FASTCONV_NUM_THREADS": "1"}) as client:
        print(f"{'case':30s} {'in-memory':>10s} {'dask':>10s} {'ratio':>6s} {'+gather':>10s} {'ratio':>6s}")
        for name, (x_shape, w_shape, kwargs, chunks) in CASES.items():
            # the chunked input lives on the workers; the in-memory call gets the same values
            xd = client.persist(da.random.default_rng(0).standard_normal(x_shape, chunks=chunks, dtype=np.float32))
            x = xd.compute()
            w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
            # a fresh weight per call: equal keys would let the scheduler reuse results still in memory
            weights = iter([w * np.float32(1 + 1e-6 * i) for i in range(3 * (args.repeats + 1))])

            def in_memory():
                conv(x, next(weights), **kwargs)

            def on_workers():
                wait(client.persist(conv(xd, next(weights), **kwargs)))

            def gathered():
                conv(xd, next(weights), **kwargs).compute()

            mem, dsk, gat = _interleaved_medians([in_memory, on_workers, gathered], args.repeats)
            print(f"{name:30s} {mem:10.3f} {dsk:10.3f} {mem / dsk:6.2f} {gat:10.3f} {mem / gat:6.2f}")
            np.testing.assert_allclose(conv(xd, w, **kwargs).compute(), conv(x, w, **kwargs), rtol=1e-4, atol=1e-4)
            xd = None  # the workers drop this case's input before the next one is made
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
