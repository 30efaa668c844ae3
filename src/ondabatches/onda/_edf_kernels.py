"""EDF/BDF windows decoded straight from their data records into the output rows.

The general path de-interleaves a window's records into an encoded channels x time
array (`._edf.deinterleave`) and then decodes it with numpy. `EdfWindows` does both in
one pass with a compiled kernel (built once per process by `._kernels.CompileOnce`,
with numba): each output row is written, record by record, from its signal's run of
``spr`` samples in each record, decoded as the `DecodePlan` of the signal decodes (the
same operations in the same order, as `._kernels` does, so the same bits). Without
numba, with the settings' ``kernels="numpy"``, on a big-endian machine, or for BDF
samples into float32 arithmetic (numpy computes that product in float64, then rounds
twice), it decodes as the general path does: `._edf.deinterleave` then
`DecodePlan.select`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _kernels
from ._decoding import decode_plan
from ._edf import EdfLayout, _Selection, deinterleave, window_bytes
from ._samples import SamplesInfo

__all__ = ["EdfWindows"]

log = logging.getLogger(__name__)


def _decode(
    buf, offsets, channels, every, rec, spr, skip, width, narrow, res, off, dst
):  # pragma: no cover
    # ``buf`` holds the window's records from the first selected byte of the first one:
    # int16 samples for EDF (``rec`` and ``offsets`` counted in samples), bytes for BDF
    # (counted in bytes). Each run of a signal in a record is a pair of 1-d slices, in
    # and out, which LLVM vectorizes (indexing the 2-d arrays in the loop ran 4x slower).
    n = dst.shape[1]
    r32, o32 = np.float32(res), np.float32(off)
    step = 3 if width == 3 else 1  # elements of buf per sample
    for j in range(dst.shape[0]):
        base = offsets[j if every else channels[j]]
        row = dst[j]
        t, r, s = 0, 0, skip
        while t < n:
            m = min(spr - s, n - t)
            out = row[t : t + m]
            p = r * rec + base + s * step
            seg = buf[p : p + m * step]
            if width == 3:
                for q in range(m):
                    v = np.int32(seg[3 * q]) | (np.int32(seg[3 * q + 1]) << 8)
                    v |= np.int32(seg[3 * q + 2]) << 16
                    v -= (v & 0x800000) << 1
                    out[q] = np.float64(v) * res + off
            elif narrow:
                for q in range(m):
                    out[q] = np.float32(seg[q]) * r32 + o32
            else:
                for q in range(m):
                    out[q] = np.float64(seg[q]) * res + off
            t += m
            r += 1
            s = 0


def _build() -> Callable[..., None]:
    return _kernels.jit(_decode)


def _attempt(kernel: Callable[..., None]) -> None:
    offsets, none = np.zeros(1, np.int64), np.zeros(0, np.intp)
    for buf, width in ((np.array([-2, 3], np.int16), 2), (np.arange(6, dtype=np.uint8), 3)):
        kernel(buf, offsets, none, True, 2, 2, 1, width, False, 0.1, 0.5, np.empty((1, 1), "f4"))


_compile = _kernels.CompileOnce(
    _build, _attempt, "compiled EDF kernels (EDF windows are decoded with numpy)", log
)


class EdfWindows:
    """Windows of one in-place signal, decoded into rows of ``out_type``, for a batch.

    `span` says which bytes of the file a window needs; `decode_into` decodes them.
    """

    __slots__ = ("layout", "sel", "info", "plan", "kernel", "args", "offsets")

    def __init__(
        self, layout: EdfLayout, sel: _Selection, info: SamplesInfo, out_type: np.dtype,
        exact: bool,
    ) -> None:  # fmt: skip
        self.layout, self.sel, self.info = layout, sel, info
        plan = self.plan = decode_plan(info, np.dtype(out_type), not exact)
        narrow = plan.how == "native" and plan.dtype == np.float32
        res, off = (1.0, 0.0) if plan.how == "cast" else (plan.resolution, plan.offset)
        width = layout.width
        self.kernel: Callable[..., None] | None = None
        if (
            plan.dtype in (np.float32, np.float64)
            and not (narrow and width == 3)
            and sys.byteorder == "little"
            and _kernels._enabled()
        ):
            self.kernel = _compile()
        unit = 2 if width == 2 else 1
        self.offsets = (sel.offsets // unit).astype(np.int64)
        self.args = (layout.record_bytes // unit, sel.spr, width, narrow, float(res),
                     float(off) if off != 0.0 else -0.0)  # fmt: skip

    def span(self, rows: range) -> tuple[int, int]:
        """The bytes ``start:stop`` of the file that rows ``rows`` (not empty) need."""
        start, stop, _ = window_bytes(self.layout, self.sel, rows)
        return start, stop

    def decode_into(
        self, buf: np.ndarray, rows: range, index: Any, channels: np.ndarray | None,
        out: np.ndarray,
    ) -> None:  # fmt: skip
        """Decode rows ``rows`` of channels ``channels`` (None: all; else indices in
        range, the items of ``index``) from ``buf``, the bytes `span` names, into
        ``out`` (C-ordered, channels x time)."""
        kernel = self.kernel
        if kernel is None:
            encoded = deinterleave(buf, self.layout, self.sel, rows, self.info.dtype)
            self.plan.select(encoded, index, out)
            return
        rec, spr, width, narrow, res, off = self.args
        src = buf.view(np.int16) if width == 2 else buf
        every = channels is None
        kernel(src, self.offsets, _NONE if every else channels, every, rec, spr,
               rows.start % spr, width, narrow, res, off, out)  # fmt: skip


_NONE = np.zeros(0, dtype=np.intp)
