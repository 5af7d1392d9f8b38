"""Cost constants the planner's default heuristic uses, with their provenance.

Seconds per unit of work on the reference machine (2 cores, AVX-512, float32),
fitted by hand from benchmarks/run.py; only their ratios matter, since the planner
compares algorithms on the same call.
"""

#: einsum per tap, single-threaded, with temporaries: ~0.5 GMAC/s.
REFERENCE_SECONDS_PER_MAC = 2e-9
#: BLAS sgemm on both cores: ~50 GMAC/s on mid-size layers.
GEMM_SECONDS_PER_MAC = 2e-11
#: Building im2col columns: strided copies at ~4 GB/s.
GEMM_SECONDS_PER_COLUMN_BYTE = 2.5e-10
