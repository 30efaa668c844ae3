"""Folds: what a run of leading gain, sign, channel-dropout and time-reversal
transforms does to a window, applied as the window is decoded (one window:
[`Fold`][ondabatches.transforms.Fold]; all of a batch's at once:
[`Folds`][ondabatches.transforms.Folds])."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Fold", "Folds"]


class Fold:
    """What a run of leading item transforms does to a window of ``rows`` channels,
    applied as the window is decoded: a gain (in the output dtype: a sign and at most
    one scale factor, so that the product is exact), rows set to a signed zero, and a
    time reversal. Its values are those of the transforms applied one by one."""

    __slots__ = ("gain", "reverse", "rows", "scaled", "zero", "zero_negative")

    def __init__(self, rows: int, dtype: np.dtype):
        self.rows = rows
        self.gain = np.dtype(dtype).type(1)
        self.zero: np.ndarray | None = None  # rows set to zero (a channel dropout)
        self.zero_negative: np.ndarray | None = None  # ... whose zero is -0.0 (a flip)
        self.reverse = False
        self.scaled = False

    def negate(self) -> None:
        self.gain = -self.gain
        if self.zero_negative is not None:
            np.logical_not(self.zero_negative, out=self.zero_negative)

    def drop(self, rows: np.ndarray) -> None:
        """Set ``rows`` (a mask) to +0.0."""
        if self.zero is None:
            self.zero, self.zero_negative = rows.copy(), np.zeros(self.rows, bool)
        else:
            self.zero |= rows
            self.zero_negative[rows] = False

    @property
    def fill(self) -> np.ndarray | None:
        """The decode's ``fill``: per row, the signed zero it is set to, NaN for a row
        kept (None: none set)."""
        if self.zero is None or not self.zero.any():
            return None
        fill = np.full(self.rows, np.nan, self.gain.dtype)
        fill[self.zero] = 0.0
        fill[self.zero & self.zero_negative] = -0.0
        return fill

    def finish(self, y: Any) -> Any:
        """``y`` reversed with the window, if it is."""
        return np.ascontiguousarray(np.asarray(y)[..., ::-1]) if self.reverse else y

    @property
    def trivial(self) -> bool:
        dropped = self.zero is not None and bool(self.zero.any())
        return not (self.reverse or dropped) and self.gain == 1


class Folds:
    """[`Fold`][ondabatches.transforms.Fold] of each of ``n`` windows of ``rows``
    channels at once (arrays of one row per window), built by the transforms'
    vectorized folds; ``active`` is False for windows whose folding stopped, ``done``
    how many transforms each took."""

    __slots__ = ("_items", "active", "done", "gain", "reverse", "rows", "scaled", "zero",
                 "zero_negative")  # fmt: skip

    def __init__(self, n: int, rows: int, dtype: np.dtype):
        self.rows = rows
        self.gain = np.ones(n, np.dtype(dtype))
        self.scaled = np.zeros(n, bool)
        self.reverse = np.zeros(n, bool)
        self.zero: np.ndarray | None = None
        self.zero_negative: np.ndarray | None = None
        self.active = np.ones(n, bool)
        self.done = np.zeros(n, np.intp)
        self._items: list[tuple[Any, bool, Any, int]] | None = None

    def head(self, rows: int) -> Folds:
        """These folds for windows of the first ``rows`` of these rows (a fold that
        draws row by row gives its first rows the same whatever the number of rows):
        the per-window arrays shared, the rows' sliced."""
        out = Folds.__new__(Folds)
        out.rows, out._items = rows, None
        out.gain, out.scaled, out.reverse = self.gain, self.scaled, self.reverse
        out.active, out.done = self.active, self.done
        out.zero = None if self.zero is None else self.zero[:, :rows]
        out.zero_negative = None if self.zero_negative is None else self.zero_negative[:, :rows]
        return out

    def negate(self, which: np.ndarray) -> None:
        """Negate the windows of mask ``which``."""
        self.gain[which] = -self.gain[which]
        if self.zero_negative is not None:
            self.zero_negative[which] = ~self.zero_negative[which]

    def drop(self, rows: np.ndarray) -> None:
        """Set the rows of mask ``rows`` (windows x rows) to +0.0."""
        if self.zero is None:
            self.zero, self.zero_negative = rows.copy(), np.zeros_like(rows)
        else:
            self.zero |= rows
            self.zero_negative[rows] = False

    @property
    def trivial(self) -> bool:
        """Whether no window has a gain, a reversal or a row set."""
        dropped = self.zero is not None and bool(self.zero.any())
        return not (dropped or self.reverse.any() or (self.gain != 1).any())

    def item(self, i: int) -> tuple[np.floating | None, bool, np.ndarray | None, int]:
        """Window ``i``'s ``(gain, reverse, fill, done)`` for the decode (gain None for
        1, fill None for no row set), as [`Fold`][ondabatches.transforms.Fold] gives."""
        return self.items()[i]

    def items(self) -> list[tuple[np.floating | None, bool, np.ndarray | None, int]]:
        """[`item`][ondabatches.transforms.Folds.item] of every window, in order."""
        if self._items is None:  # every window's, worked out once (asked once each)
            fills: list[Any] = [None] * len(self.gain)
            if self.zero is not None:
                signed = np.where(self.zero_negative, -0.0, 0.0)
                values = np.where(self.zero, signed, np.nan).astype(self.gain.dtype)
                for j in np.flatnonzero(self.zero.any(axis=1)).tolist():
                    fills[j] = values[j]
            ones = (self.gain == 1).tolist()
            gains = [None if one else g for one, g in zip(ones, self.gain, strict=True)]
            self._items = list(
                zip(gains, self.reverse.tolist(), fills, self.done.tolist(), strict=True)
            )
        return self._items
