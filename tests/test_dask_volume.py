"""``fastconv volume``: a zarr volume 4x larger than the workers' memory is convolved block by block,
the result is right, and the worker's peak memory stays under its limit."""

from __future__ import annotations

import re

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("distributed")

from fastconv import ConvGeometry, cli  # noqa: E402
from fastconv._errors import CallContext  # noqa: E402
from fastconv.functional import conv3d  # noqa: E402

MEMORY_LIMIT = 400 * 10**6  # the one worker's limit: all the memory the computation is given
SHAPE = (512, 800, 1024)  # float32: 1.68 GB, over 4x the limit
CHUNK = 64  # does not divide 800: uneven edge chunks


def _write_volume(path) -> None:
    """Slab by slab, never the whole volume in memory: a random tile repeated, plus a per-slab offset so
    that a block written to the wrong place shows. Small integers, compressed fast (lz4 + bitshuffle)."""
    from zarr.codecs import BloscCodec

    z = zarr.create_array(path, shape=SHAPE, chunks=(CHUNK,) * 3, dtype="float32",
                          compressors=BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle"))
    tile = np.random.default_rng(3).integers(0, 4, (CHUNK,) * 3).astype(np.float32)
    slab = np.tile(tile, (1, -(-SHAPE[1] // CHUNK), -(-SHAPE[2] // CHUNK)))[:, :SHAPE[1], :SHAPE[2]]
    for n, start in enumerate(range(0, SHAPE[0], CHUNK)):
        z[start:start + CHUNK] = slab[:SHAPE[0] - start] + n  # one slab of chunks at a time


def test_volume_larger_than_memory(tmp_path, capsys):
    source, target = str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr")
    _write_volume(source)
    assert np.prod(SHAPE) * 4 >= 4 * MEMORY_LIMIT
    # stride 2 keeps CI fast (an eighth of the outputs) while every input block is still read with a halo
    code = cli.main(["volume", source, target, "--kernel", "box:3", "--stride", "2", "--padding", "1",
                     "--workers", "1", "--threads-per-worker", "2", "--memory-limit", str(MEMORY_LIMIT)])
    out = capsys.readouterr().out
    summary = out.strip().splitlines()[-1]
    assert code == 0 and "100% Completed" in out  # the progress bar ran to the end
    peaks = [int(v) for v in re.search(r"peak worker memory ([\d, ]+) MiB", summary).group(1).split(",")]
    assert len(peaks) == 1 and peaks[0] * 2**20 < MEMORY_LIMIT, summary
    assert "restarted" not in summary, summary

    x, y = zarr.open_array(source, mode="r"), zarr.open_array(target, mode="r")
    weight = np.full((1, 1, 3, 3, 3), 1 / 27, dtype=np.float32)
    geom = ConvGeometry.for_conv((1, 1, *SHAPE), weight.shape, 2, 1, 1, 1, CallContext("test"))
    assert y.shape == geom.out_size and y.dtype == np.float32
    # spot checks: both corners and a block straddling chunk boundaries, against the in-memory path
    for corner in [(0, 0, 0), (40, 350, 300), tuple(n - 20 for n in geom.out_size)]:
        spans = [geom.input_span(d, c, c + 20) for d, c in enumerate(corner)]
        region = x[tuple(slice(max(a, 0), min(b, n)) for (a, b), n in zip(spans, SHAPE))]
        pads = [(max(-a, 0), max(b - n, 0)) for (a, b), n in zip(spans, SHAPE)]
        expected = conv3d(region[None, None], weight, stride=2, padding=pads)[0, 0]
        got = y[tuple(slice(c, c + 20) for c in corner)]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_volume_with_channels_and_a_weight_file(tmp_path, capsys):
    x = np.random.default_rng(4).standard_normal((2, 20, 17, 23)).astype(np.float32)  # (C, D, H, W)
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, chunks=(2, 8, 8, 8), dtype="float32")
    z[:] = x
    w = np.random.default_rng(5).standard_normal((4, 1, 3, 2, 3)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    code = cli.main(["volume", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "--kernel",
                     str(tmp_path / "w.npy"), "--groups", "2", "--dilation", "(1, 2, 1)", "--chunks", "7",
                     "--workers", "1", "--no-progress"])
    assert code == 0 and "peak worker memory" in capsys.readouterr().out
    y = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    np.testing.assert_allclose(y[:], conv3d(x, w, padding="same", dilation=(1, 2, 1), groups=2), rtol=1e-5, atol=1e-5)
