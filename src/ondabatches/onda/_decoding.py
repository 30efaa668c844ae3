"""Decoding encoded samples straight into an output array, exactly, at numpy's speed.

The values are those of Onda's decode, ``resolution * sample + offset`` computed in
float64 and rounded once to the requested dtype (`exact_decode`, the plain
path). A `DecodePlan`, built once per encoding and dtype and cached in the
process, gets the same values faster:

- the identity encoding is one cast;
- for 8- and 16-bit sample types, whose every value can be tried, the plan decodes all
  256 or 65,536 of them both ways when it is built: where float32 (or the output
  dtype's) arithmetic gives exactly the plain values for every possible sample (a
  resolution that is a power of two, say), it uses that arithmetic (one fused cast and
  multiply); otherwise it computes in float64 as the plain path does;
- other types compute in float64 with numpy's buffered casting (one pass over the data,
  cast in cache-sized blocks), adding a nonzero offset in float64 a block of channels
  at a time, so that nothing is rounded twice.

``fast=True`` asks for float32 arithmetic when decoding into float32, whatever it
costs in exactness (see `FAST_MAX_ERROR`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ._kernels import decode_rows, decoder
from ._samples import SamplesInfo

__all__ = ["FAST_MAX_ERROR", "DecodePlan", "decode_plan", "exact_decode"]

#: ``fast`` decoding into float32 differs from `exact_decode` by at most
#: ``FAST_MAX_ERROR * (|resolution * sample| + |offset|)``: the resolution, the offset,
#: the product and the sum are each rounded to float32 (a relative 2**-24 each), against
#: the exact path's single rounding: under 5 x 2**-24, bounded here by 2**-21 (for
#: values in float32's normal range; below it, errors are float32's subnormal spacing).
FAST_MAX_ERROR = 2.0**-21

# Elements of float64 scratch per block when an offset is added in float64 (256 KiB).
_BLOCK = 1 << 15


def exact_decode(data: np.ndarray, info: SamplesInfo, dtype: np.dtype) -> np.ndarray:
    """Onda's decode, the plain way: ``sample * resolution + offset`` in float64, rounded once.

    The identity encoding (resolution 1, offset 0) is a plain cast to ``dtype``; a zero
    offset is not added (so ``-0.0`` stays ``-0.0``).

    Examples
    --------
    >>> info = SamplesInfo("eeg", ("a",), "uV", 0.1, 0.0, "int16", 1.0)
    >>> exact_decode(np.array([[3]], dtype=np.int16), info, np.dtype(np.float32))
    array([[0.3]], dtype=float32)
    """
    if info.is_identity_encoding:
        return np.asarray(data).astype(dtype)
    wide = np.asarray(data).astype(np.float64) * info.sample_resolution_in_unit
    if info.sample_offset_in_unit != 0.0:
        wide += info.sample_offset_in_unit
    return wide.astype(dtype)


@dataclass(frozen=True, slots=True)
class DecodePlan:
    """How samples of one encoding are decoded into one dtype (see the module docs).

    ``how`` is ``"cast"``, ``"native"`` (arithmetic in the output dtype, proven equal to
    the plain path for every possible sample, or asked for with ``fast``) or
    ``"float64"``.
    """

    how: str
    resolution: float
    offset: float
    dtype: np.dtype

    def __call__(self, data: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Decode ``data`` (encoded, any layout) into ``out`` (same shape) and return it."""
        if self.how == "cast":
            np.copyto(out, data, casting="unsafe")
        elif self.how == "native":
            kind = out.dtype.type
            np.multiply(data, kind(self.resolution), out=out, casting="unsafe")
            if self.offset != 0.0:
                np.add(out, kind(self.offset), out=out)
        elif self.offset == 0.0 or out.dtype == np.float64:
            np.multiply(data, np.float64(self.resolution), out=out, casting="unsafe")
            if self.offset != 0.0:
                np.add(out, np.float64(self.offset), out=out)
        else:
            self._float64_blocks(data, out)
        return out

    def select(
        self,
        data: np.ndarray,
        index: slice | list[int] | np.ndarray,
        out: np.ndarray,
        gain: np.floating | None = None,
        reverse: bool = False,
        fill: np.ndarray | None = None,
    ) -> np.ndarray:
        """Decode rows ``index`` of ``data`` (channels x time) into ``out`` and return it.

        A window read from interleaved samples goes through a compiled kernel when one
        runs here (see `._kernels`): selection, transpose and decode in one pass,
        with the same values as ``self(data[index], out)``. ``gain`` (a scalar of
        ``out``'s dtype) and ``reverse`` give the values of ``out *= gain`` and then
        ``out[:, ::-1]``; ``fill`` (one value per row of ``out``: NaN for a row kept)
        then sets each row whose value is not NaN to it (the kernel does all of it in
        the same pass).
        """
        if self.how == "cast":
            res, off = 1.0, 0.0  # exact in float64 for the kernels' sample types
        else:
            res, off = self.resolution, self.offset
        if decode_rows(data, index, res, off, self.how == "native", out, gain, reverse, fill):
            return out
        if not (isinstance(index, slice) and index == slice(None)):
            data = data[index]
        self(data, out)
        return post_decode(out, gain, reverse, fill)

    def kernel_decoder(self, sample_type: np.dtype, folded: bool = False) -> Any:
        """`select`'s compiled kernel for windows of ``sample_type``, its checks done
        once (see `._kernels.decoder`; ``folded``: the one that takes ``gain``,
        ``reverse`` and ``fill``); None where `select` takes numpy's path."""
        res, off = (1.0, 0.0) if self.how == "cast" else (self.resolution, self.offset)
        return decoder(sample_type, self.dtype, res, off, self.how == "native", folded)

    def _float64_blocks(self, data: np.ndarray, out: np.ndarray) -> None:
        # Multiply and add in float64 a few rows at a time, so that the scratch stays in
        # cache and the sum is rounded to the output dtype only once.
        if data.size == 0:
            return
        rows = data.reshape(-1, data.shape[-1]) if data.ndim else data.reshape(1, 1)
        dest = out.reshape(rows.shape)
        step = max(1, _BLOCK // max(1, rows.shape[1]))
        scratch = np.empty((min(step, rows.shape[0]), rows.shape[1]), dtype=np.float64)
        for r in range(0, rows.shape[0], step):
            block = scratch[: min(step, rows.shape[0] - r)]
            np.multiply(rows[r : r + step], np.float64(self.resolution), out=block)
            block += self.offset
            np.copyto(dest[r : r + step], block, casting="unsafe")


@lru_cache(maxsize=256)
def decode_plan(info: SamplesInfo, dtype: np.dtype, fast: bool = False) -> DecodePlan:
    """The cached `DecodePlan` of ``info``'s encoding into ``dtype``.

    Examples
    --------
    >>> info = SamplesInfo("eeg", ("a",), "uV", 0.25, -8.0, "int16", 1.0)
    >>> decode_plan(info, np.dtype(np.float32)).how  # exact in float32 for every int16
    'native'
    >>> from dataclasses import replace
    >>> decode_plan(replace(info, sample_resolution_in_unit=0.1), np.dtype(np.float32)).how
    'float64'
    """
    dtype = np.dtype(dtype)
    res, off = info.sample_resolution_in_unit, info.sample_offset_in_unit
    if info.is_identity_encoding:
        return DecodePlan("cast", res, off, dtype)
    native = DecodePlan("native", res, off, dtype)
    if fast and dtype == np.float32:
        return native
    if info.dtype.itemsize <= 2 and info.dtype.kind in "iu" and dtype.kind in "fc":
        # Every value the sample type can hold.
        every = np.arange(2 ** (8 * info.dtype.itemsize), dtype=np.uint16).astype(
            info.dtype.newbyteorder("="), casting="unsafe"
        )
        with np.errstate(all="ignore"):
            plain = exact_decode(every, info, dtype)
            quick = native(every, np.empty(every.shape, dtype=dtype))
        if _same_values(plain, quick):
            return native
    return DecodePlan("float64", res, off, dtype)


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equal (so that -0.0 and 0.0 differ, and NaNs of the same bits agree)."""
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def post_decode(
    out: np.ndarray, gain: np.floating | None, reverse: bool, fill: np.ndarray | None
) -> np.ndarray:
    """What `DecodePlan.select`'s ``gain``, ``reverse`` and ``fill`` do to a
    decoded ``out`` (channels x time), done by numpy where no kernel did them."""
    if gain is not None:
        np.multiply(out, out.dtype.type(gain), out=out)
    if reverse:
        out[...] = out[:, ::-1].copy()
    if fill is not None:
        for row in np.flatnonzero(~np.isnan(fill)).tolist():
            out[row] = fill[row]
    return out
