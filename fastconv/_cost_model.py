"""Cost constants the planner's default heuristic uses, with their provenance.

Seconds per unit of work on the reference machine (2 cores, AVX-512, float32),
fitted by hand from benchmarks/run.py; only their ratios matter, since the planner
compares algorithms on the same call.
"""

#: Per-algorithm factors the planner multiplies each algorithm's own estimate by, so that the
#: algorithms' separately fitted models agree with each other. Fitted by helper PLANNER over the
#: suite with ``benchmarks/planner_quality.py --repeats 5 --json`` (2 threads) and
#: ``--from-json RUNS... --fit``: three runs on the loaded machine gave these factors (with winograd2
#: 1.414; pick/best p95 1.37 -> 1.04), three on the idle machine refitted winograd2 to 1.189 (p95 1.22
#: -> 1.12). The runs are in benchmarks/results/. Refit when an algorithm's own model changes; absent = 1.
# Winograd's then took x0.7 (winograd2 1.189 -> 0.832, winograd4 1 -> 0.7): single-threaded forced
# runs of eight layers (3x3c64 to c3d) put its estimates at 1.3-1.9x their times where gemm's,
# taps' and direct's run 0.95-1.3x (least squares on its products and transforms: x0.83, x0.76 to
# reach 1.2x); 3x3c64 had been left to winograd4 only by a 3.5x overestimate of blocked's.
# subpixel_blocked (blocked's estimate on the rows and columns it computes) x1.3: its time over
# subpixel's was 0.83 on dcgan.up4x4s2, 1.10 on hifigan.up16s8 (its stride-8 stores spread each
# vector over 8 masked stores) and 1.04 on unet.up2x2s2, where its estimates stood at 0.71, 0.83
# and 0.82 of subpixel's (8 interleaved rounds, both cores).
CALIBRATION: dict[str, float] = {"depthwise": 0.841, "subpixel": 0.841, "winograd2": 0.832, "winograd4": 0.7,
                                 "blocked": 1.1, "subpixel_blocked": 1.3,
                                 "winograd2_blocked": 1.3, "winograd4_blocked": 1.3}

#: Fixed seconds of one call of each algorithm beyond its work estimate (Python set-up, scratch,
#: the hand-off to worker threads, kernel entry), which the planner adds to every estimate: medians
#: of near-empty calls (1 sample, 4-16 channels, 6x6; minus their work estimates) on the reference
#: machine in its faster mode (its slower one doubles them). They decide small calls: without them
#: the planner sent a (1, 16, 8, 8) depthwise layer to fft (0.75 ms), where depthwise took 0.16 ms.
#: subpixel_blocked's: 0.94x subpixel's near-empty call, timed side by side.
CALL_SECONDS: dict[str, float] = {"reference": 1.5e-4, "gemm": 1.2e-4, "taps": 2e-4, "fft": 4e-4, "direct": 9.5e-5,
                                  "blocked": 1.5e-4, "depthwise": 9.5e-5, "depthwise_blocked": 9.5e-5,
                                  "subpixel": 2.2e-4, "subpixel_blocked": 2.1e-4, "winograd2": 1.5e-4,
                                  "winograd4": 1.8e-4, "winograd2_blocked": 1.5e-4, "winograd4_blocked": 1.5e-4}

#: numba's one-time start-up in a process, paid by the first call of any compiled algorithm:
#: importing numba (0.21 s), its BLAS check importing scipy.linalg (0.18 s) and registering its
#: typing and lowering tables (0.25 s); measured in fresh processes on the reference machine
#: (benchmarks/startup.py). Loading a cached kernel adds 15-60 ms, not counted.
COMPILER_STARTUP_SECONDS = 0.65

#: Per element the "via forward" routes copy (``_adjoint``: the flipped, channel-swapped weight and
#: the zero-stuffed output gradient of input_grad; the swapped input, output gradient and result of
#: weight_grad): numpy's strided copies of short inner runs, 1.7 ms for a 256x256x3x3 weight on the
#: reference machine. Without it the planner ran train.3x3c256.dgrad via forward in 18.9 ms where
#: gemm's native input gradient took 10.1 ms.
ADJOINT_SECONDS_PER_ELEMENT = 3e-9

#: einsum per tap, single-threaded, with temporaries: ~0.5 GMAC/s.
REFERENCE_SECONDS_PER_MAC = 2e-9
# ---- gemm and subpixel (algorithms/gemm.py Gemm.cost, algorithms/subpixel.py) ---------------
# Fitted on 86 (layer, op) timings of gemm and subpixel (suite layers without depthwise/grouped
# ones, plus 9 variants; float32, one thread, CPU time, best of 3, on the loaded reference
# machine): estimate/measured has a geometric mean of 1.0 and a spread (std of log) of 0.15.
#: BLAS sgemm multiply-add at large sizes (OpenBLAS, SkylakeX kernels): ~50 GMAC/s.
GEMM_SECONDS_PER_MAC = 2e-11
#: Per byte packed (im2col), scattered (col2im, pixel shuffle) or transposed by the compiled kernels.
GEMM_SECONDS_PER_COLUMN_BYTE = 3e-10
#: Matrix sizes (M, K, N) at which BLAS runs at half its peak rate: the slowdown is 1 + 24/m + 24/k + 24/n.
GEMM_HALF_RATE_SIZES = (24, 24, 24)


def gemm_seconds(macs: int, m: int, k: int, n: int, column_elements: int, itemsize: int) -> float:
    """Estimated seconds of ``macs`` multiply-adds done as (m x k) @ (k x n) products, plus
    writing ``column_elements`` packed columns; small matrices run below the peak rate."""
    m0, k0, n0 = GEMM_HALF_RATE_SIZES
    slowdown = 1 + m0 / m + k0 / k + n0 / n
    return macs * GEMM_SECONDS_PER_MAC * slowdown + column_elements * itemsize * GEMM_SECONDS_PER_COLUMN_BYTE

# ---- fft (algorithms/fft.py, _fft_layout) ------------------------------------------------
# Fitted (non-negative least squares, ratio fft/matrix fixed at 5 from per-axis timings) to
# single-threaded CPU times of FFT.forward on 15 geometries (depthwise 7..31, dense 3..15,
# 1-D 80..256 taps, 3-D 7^3, a weight-gradient geometry), then scaled by the ratio of
# gemm's estimate to its measured time on the dense ones (0.92), so both are in one unit.
# Fit within 0.5-1.5x per case; crossovers vs gemm (dense 5x5, 1-D 256 taps) predicted.
#: pocketfft per point x log2(length) of a complex 1-D transform; real ones count half.
FFT_SECONDS_PER_POINT_LOG2 = 1.6e-9
#: Complex multiply-add of a DFT done as a matrix product (BLAS); real ones count half.
FFT_SECONDS_PER_DFT_MAC = 3.2e-10
#: Complex multiply-add of the per-frequency channel contraction (batched small cgemm).
FFT_SECONDS_PER_COMPLEX_MAC = 1.4e-9
#: Per element of every spectrum and input buffer: copies, zeroing, elementwise products.
FFT_SECONDS_PER_ELEMENT = 1.4e-9
#: relative_error_bound = eps/2 * (A * log2(transform volume) + B * sqrt(terms per frequency));
#: float32 measurements sit at 3.4-5.2 eps/2, at least 3x below it (fft.py docstring).
FFT_ERROR_PER_LOG2_POINT = 1.0
FFT_ERROR_PER_SQRT_TERM = 1.0

# ---- direct and depthwise (algorithms/direct.py, Direct.cost) ---------------------------------
# Least-squares fit (relative errors) of 24 calls x 2 runs: the suite's depthwise, grouped and
# few-channel layers and variants (1-D/3-D depthwise, large kernels, gradients), both cores,
# medians of 9, each timed beside a BLAS sgemm whose rate is taken as GEMM_SECONDS_PER_MAC.
# Fit error ~40% (geometric), mostly the run-to-run noise of the loaded machine.
#: Multiply-add of the one-output register tile (4 x 64-byte registers).
DIRECT_SECONDS_PER_MAC = 3.2e-11
#: Multiply-add of the four-output register tile (4 outputs sharing each load).
DIRECT_SECONDS_PER_BLOCKED_MAC = 1.75e-11
#: ... when the 4 outputs are 4 output rows (runs one row long): 0.61-0.73x the one-output tile's
#: time per multiply-add (zero cells included) on 13x13 and 31x31 depthwise layers.
DIRECT_SECONDS_PER_ROWS_MAC = 2.4e-11
#: Per element packed (zero-padded, phase-split input planes) or stored/loaded (outputs, gradients).
DIRECT_SECONDS_PER_ELEMENT = 7.7e-10
#: Multiply-adds slow down by 1 + (packed planes of a group) / this: 1.15x at 5 MB, 2x at 37 MB
#: (32-channel 3-D volumes, single thread, against 2-D layers whose group packs in 0.4 MB).
DIRECT_CACHE_BYTES = 32 * 2**20
#: Factor on the weight gradient's estimate when groups have several input channels (the
#: dot-product kernel): its measured/estimated ratio was 1.8-2.1x gemm's on 64- and 32-channel
#: 3x3 layers (train.3x3c64.wgrad and (8, 32, 64, 64); interleaved medians of 5-7 rounds, both
#: cores). With it, planner_quality.py measures direct's estimates at 0.88-1.0x its times.
DIRECT_DENSE_WEIGHT_GRAD_FACTOR = 2.0
#: Calls estimated below this run on one thread: waking a second one costs more (loaded machine:
#: 8 ms median for a 0.4 ms depthwise call on two threads).
DIRECT_PARALLEL_SECONDS = 5e-4

# ---- blocked (algorithms/blocked.py, Blocked.cost) ---------------------------------------------
# The packing costs are their measured single-threaded times (x1.05); the multiply-add and output
# terms are fitted (non-negative least squares) to eight suite layers run single-threaded (3x3c64,
# c128s2, c256, c512, deeplab.3x3d2, same.5x5c32, wavenet.k2d64, tts.k3c256), aiming at 1.05x
# their times, where gemm's and taps' estimates sit on those layers: 0.83-1.2x. Its CALIBRATION
# factor (1.1) keeps the planner off it where it ties within 10% (3x3c256 and winograd2).
#: Multiply-add of the micro-kernel at its widest tile (14 pixels x 32 outputs); zero-padded
#: channels count. ~120 GFLOP/s per core on the reference machine.
BLOCKED_SECONDS_PER_MAC = 1.55e-11
#: Narrower tiles slow down by 1 + this / pixels (7 pixels: 1.06x the 14-pixel tile's time).
BLOCKED_TILE_OVERHEAD_PIXELS = 0.8
#: Factor on the multiply-adds when one input block's weights outgrow L1 (a 3x3x3 kernel's 55 KiB
#: in float32) and every tile streams them from L2: unet3d.3x3x3c32 ran 1.12x slower than
#: winograd4, 1.3x its estimate relative to winograd4's.
BLOCKED_L2_WEIGHTS_FACTOR = 1.3
#: Per byte of the packed input: a gather of each pixel's channels (0.9 ms for 3x3c64's 3.4 MB,
#: 3.3 ms for wavenet.k2d64's 16 MB on one core), for strided layers; unstrided rows move by
#: vector transposes, 1.47x faster (a 56x56 map, both kernels timed side by side).
BLOCKED_SECONDS_PER_PACKED_INPUT_BYTE = 2.7e-10
BLOCKED_SECONDS_PER_TRANSPOSED_INPUT_BYTE = BLOCKED_SECONDS_PER_PACKED_INPUT_BYTE / 1.47
#: Per byte of the packed weights: vector transposes of w's rows (2.8 ms for 512x512x3x3).
BLOCKED_SECONDS_PER_PACKED_WEIGHT_BYTE = 3.2e-10
#: Per byte of the output, its sums stored from pixel-major order by vector transposes.
BLOCKED_SECONDS_PER_OUTPUT_BYTE = 2.9e-10

# ---- depthwise_blocked (algorithms/depthwise_blocked.py, DepthwiseBlocked.cost) -------------------
# Fitted (non-negative least squares) to the suite's four depthwise forward layers on 2 threads
# (dw3x3, dw3x3s2, dw5x5, dw31x31: 1.34, 2.14, 0.84, 2.85 ms) so that its estimates stand to its
# times as ``depthwise``'s do on the same layers (1.8-2.5x; within 0.91-1.10 of that): the planner
# then picks it where it was faster (dw5x5, 0.84 vs 0.94 ms; dw31x31, 2.85 vs 3.16 ms).
#: Per vector multiply-add (one tap of one output pixel of a block of channels).
DEPTHWISE_BLOCKED_SECONDS_PER_VECTOR_MAC = 3.6e-10
#: Per byte of the packed planes and of the output, both moved by vector transposes.
DEPTHWISE_BLOCKED_SECONDS_PER_BYTE = 1.8e-10

# ---- winograd (algorithms/winograd.py, Winograd.cost) -----------------------------------------
# The transform-domain products are costed as gemm's (gemm_seconds); the transforms per element
# of the transformed inputs, products and filters, times the alpha = m + 2 terms each element of
# a 1-D transform sums (float32; scaled by itemsize). Least-squares fit (log ratios) of 12
# geometries (the suite's 3x3 stride-1 layers and smaller 1-D/2-D/3-D ones), single-threaded CPU
# time beside gemm in one process, to the same estimate/measured ratio as gemm's (1.15):
# spread (std of log) 0.12 for F(2,3) and F(4,3), whose best constants differ by their alpha (1.6x).
#: Per element of the transformed inputs, products and filters, per transform term (alpha of them).
WINOGRAD_SECONDS_PER_ELEMENT_TERM = 4.0e-10

# ---- winograd_blocked (algorithms/winograd_blocked.py, WinogradBlocked.cost) -------------------
# Non-negative least squares (relative errors) on 20 single-threaded calls: both tile sizes on ten
# 2-D 3x3 layers of 16 to 512 channels and 8x8 to 112x112 maps (fit within 0.79-1.17 of each time
# but one, resnet50.3x3c64's F(4,3), estimated at 0.7x). CALIBRATION (1.3) puts its estimates on
# the scale of blocked's and winograd's calibrated ones: on those layers, single- and two-threaded,
# the planner then picks the fastest of winograd, winograd_blocked and blocked on all ten.
#: Multiply-add of its products (blocked's micro-kernel; zero-padded channels count).
WINOGRAD_BLOCKED_SECONDS_PER_MAC = 1.35e-11
#: Per transform-domain element (inputs and products, each written and read back) and per element
#: of the packed input.
WINOGRAD_BLOCKED_SECONDS_PER_ELEMENT = 5.5e-10
#: Per transformed filter element, made once per call ...
WINOGRAD_BLOCKED_SECONDS_PER_FILTER_ELEMENT = 1.9e-9
#: ... and read by every chunk's products (resnet50.3x3c512's 9 MiB of F(4,3) filters, read by 16
#: chunks: 3.7x blocked's time).
WINOGRAD_BLOCKED_SECONDS_PER_FILTER_READ = 7.0e-11

# ---- taps (algorithms/taps.py, Taps.cost) ------------------------------------------------------
# The per-tap products are costed as gemm's (gemm_seconds: depth Cg, chunk-wide, garbage columns
# included), so both share one unit. The two constants below were fitted (least squares on log
# ratios) to single-threaded CPU times (min of 3) of taps on the 16 suite layers it accepts, beside
# gemm in the same process on the loaded reference machine: the per-call constant came out at
# 3.3e-6; the per-element one was ill-determined by that noise (the fit drove it to zero), so it is
# the rate of numpy's in-L2 add measured alone (3-9 G elements/s) plus the memory-bound copies.
# Estimate/measured, relative to gemm's on the same layers: 0.6 (7x7 maps, whose chunks are one
# 61-column sample) to 1.45 (same.5x5c32), spread (std of log) 0.27.
#: Per element (float32; scaled by itemsize) padded, accumulated or copied out.
TAPS_SECONDS_PER_ELEMENT = 4e-10
#: Fixed cost of one product call (numpy.matmul dispatch and BLAS set-up, per group).
TAPS_SECONDS_PER_PRODUCT = 3.3e-6
