"""The randomness of random transforms: pure functions of (seed, batch index, item,
transform position).

[`generator_for`][ondabatches.transforms.generator_for] gives a generator of a key (for
bulk draws, noise); the built-in augmentations draw their coin and the few numbers
after it from [`keyed_uniforms`][ondabatches.transforms.keyed_uniforms] of the key and
a counter, read through [`KeyedDraws`][ondabatches.transforms.KeyedDraws] or, for all
of a batch's items at once, [`BatchDraws`][ondabatches.transforms.BatchDraws].
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import OndaBatchesError
from ..onda import _kernels

__all__ = ["BatchDraws", "KeyedDraws", "coins_for", "generator_for", "keyed_uniforms"]

log = logging.getLogger(__name__)


def generator_for(seed: int, index: int, item: int | None, position: int) -> np.random.Generator:
    """The generator of transform ``position`` for item ``item`` of batch ``index`` of
    ``seed``'s stream (``item`` None: a batch transform).

    A PCG64 whose 128-bit state and increment are a BLAKE2b hash of the four numbers:
    distinct streams for distinct keys. It is this thread's one generator, set to that
    state (3 us; a fresh ``SeedSequence`` takes 17 us, a sizeable share of a batch for
    4 augmentations of 32 items): use it before asking for the next.
    """
    text = f"ondabatches-transform:{int(seed)}:{int(index)}:{item}:{int(position)}"
    digest = hashlib.blake2b(text.encode(), digest_size=32).digest()
    generator = getattr(_LOCAL, "generator", None)
    if generator is None:
        generator = _LOCAL.generator = np.random.Generator(np.random.PCG64(0))
    generator.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {
            "state": int.from_bytes(digest[:16], "little"),
            "inc": int.from_bytes(digest[16:], "little") | 1,
        },
        "has_uint32": 0,
        "uinteger": 0,
    }
    return generator


_LOCAL = threading.local()


class KeyedDraws:
    """The randomness of a built-in augmentation at one key (seed, batch index, item,
    position): [`coin`][ondabatches.transforms.KeyedDraws.coin], whether it applies,
    and [`uniforms`][ondabatches.transforms.KeyedDraws.uniforms], the few numbers it
    draws when it does, are [`keyed_uniforms`][ondabatches.transforms.keyed_uniforms]
    of the key (counter 0 for the coin, then 1, 2, ...), read from the batch's
    [`BatchDraws`][ondabatches.transforms.BatchDraws] when given one (every item of the
    batch hashed at once); [`generator`][ondabatches.transforms.KeyedDraws.generator],
    for bulk draws (noise), is made only when asked
    ([`generator_for`][ondabatches.transforms.generator_for])."""

    __slots__ = ("_batch", "_coin", "_generator", "key")

    def __init__(
        self,
        seed: int,
        index: int,
        item: int | None,
        position: int,
        coin: float | None = None,
        batch: BatchDraws | None = None,
    ):
        self.key = (int(seed), int(index), item, int(position))
        self._coin = coin
        self._batch = batch if batch is not None and batch.key == self.key[:2] else None
        self._generator: np.random.Generator | None = None

    def coin(self) -> float:
        """A uniform in [0, 1) of the key (its counter 0)."""
        if self._coin is None:
            self._coin = float(self._counters(1)[0])
        return self._coin

    def uniforms(self, count: int) -> np.ndarray:
        """``count`` uniforms in [0, 1) of the key that follow its coin (counters 1 to
        ``count``): the first ones are the same whatever ``count`` is."""
        return self._counters(count + 1)[1:]

    def _counters(self, count: int) -> np.ndarray:
        seed, index, item, position = self.key
        if self._batch is not None and item is not None:
            return self._batch.uniforms(position, count, item + 1)[item]
        return keyed_uniforms(seed, index, item, position, np.arange(count))

    @property
    def generator(self) -> np.random.Generator:
        if self._generator is None:
            self._generator = generator_for(*self.key)
        return self._generator


def keyed_uniforms(seed: int, index: int, item: Any, position: Any, counter: Any) -> np.ndarray:
    """Uniforms in [0, 1) hashed from ``(seed, batch index, item, position, counter)``.

    ``item`` (None: a batch transform), ``position`` and ``counter`` are non-negative
    integers or arrays of them, broadcast together: the result has their shape (at
    least one dimension), each value a pure function of its own five numbers, so that
    a batch's items are drawn in a few array operations and any one of them alone
    gives the same value. The hash: a 64-bit BLAKE2b word of ``(seed, index)``, then
    ``position``, ``item`` and ``counter`` in turn each added (times the golden-ratio
    constant) and mixed by SplitMix64's finalizer; the top 53 bits make the uniform.
    """
    if isinstance(position, (int, np.integer)):
        z = _position_word(int(seed), int(index), int(position))  # the usual case
    else:
        z = _mix(_stir(np.asarray(position, np.int64), _seed_word(seed, index)))
    z = _mix(_stir(np.asarray(-1 if item is None else item, np.int64), z))
    z = _mix(_stir(np.asarray(counter, np.int64), z))
    return (z >> _S11) * _ULP


def _stir(values: np.ndarray, z: Any) -> np.ndarray:
    """``z + (values + 1) * golden`` in uint64 (one dimension at least: numpy warns of a
    0-d array's wrap-around, not of an array's)."""
    return (np.atleast_1d(values) + 1).astype(np.uint64) * _GOLDEN + z


@functools.lru_cache(maxsize=1024)
def _seed_word(seed: int, index: int) -> np.uint64:
    text = f"ondabatches-draws:{int(seed)}:{int(index)}"
    return np.uint64(
        int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    )


@functools.lru_cache(maxsize=1024)
def _position_word(seed: int, index: int, position: int) -> np.uint64:
    return _mix(_stir(np.asarray(position, np.int64), _seed_word(seed, index)))[0]


def _mix(z: np.ndarray) -> np.ndarray:
    # SplitMix64's finalizer (a bijection of 64-bit words); uint64 arrays wrap silently.
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = (np.uint64(k) for k in (11, 27, 30, 31))
_ULP = 2.0**-53


def coins_for(seed: int, index: int, item: int | None, n: int) -> list[float]:
    """The coins of positions ``0 .. n - 1`` of item ``item`` of batch ``index``: their
    [`keyed_uniforms`][ondabatches.transforms.keyed_uniforms] at counter 0."""
    return keyed_uniforms(seed, index, item, np.arange(n), 0).tolist()


class BatchDraws:
    """[`keyed_uniforms`][ondabatches.transforms.keyed_uniforms] of the items of batch
    ``index`` of ``seed``'s stream, hashed for a block of items at once and kept: a
    batch's augmentations cost a few array operations per transform instead of a hash
    per item and transform. The values are those of each key alone."""

    __slots__ = ("_blocks", "key")

    def __init__(self, seed: int, index: int):
        self.key = (int(seed), int(index))
        # Per position, an (items, counters) block: the largest asked so far.
        self._blocks: dict[int, np.ndarray] = {}

    def uniforms(self, position: int, count: int, n: int) -> np.ndarray:
        """An ``(n, count)`` array: row ``i`` holds counters ``0 .. count - 1`` of item
        ``i`` at transform ``position`` (column 0: the coins)."""
        block = self._blocks.get(position)
        if block is None or block.shape[0] < n or block.shape[1] < count:
            self.prefetch([position], count, n)
            block = self._blocks[position]
        return block[:n, :count]

    def prefetch(self, positions: Sequence[int], count: int, n: int) -> None:
        """Hash counters ``0 .. count - 1`` of items ``0 .. n - 1`` at each of
        ``positions`` in one go (at least as many as already kept)."""
        size = max(_BLOCK, 1 << (n - 1).bit_length())
        kept_all = [self._blocks.get(p) for p in positions]
        positions = [
            p
            for p, kept in zip(positions, kept_all, strict=True)
            if kept is None or kept.shape[0] < n or kept.shape[1] < count
        ]  # those kept large enough already are left as they are
        if not positions:
            return
        for p in positions:
            kept = self._blocks.get(p)
            if kept is not None:
                size, count = max(size, kept.shape[0]), max(count, kept.shape[1])
        blocks = _hashed_block(self.key, positions, size, count)
        blocks.flags.writeable = False
        for p, block in zip(positions, blocks, strict=True):
            self._blocks[p] = block  # a race computes it twice, to the same values


def _hashed_block(key: tuple[int, int], positions: list[int], size: int, count: int):
    """`keyed_uniforms` of items ``0 .. size - 1``, counters ``0 .. count - 1`` at each
    of ``positions``, a (positions, items, counters) array: by a compiled loop where
    numba runs (the same uint64 words, so the same values: one call, where numpy's
    three dozen array operations cost a batch about 0.1 ms), else by numpy."""
    kernel = _block_kernel() if _kernels.available() else None
    if kernel is None or any(p < 0 for p in positions):
        return keyed_uniforms(
            *key,
            np.arange(size)[None, :, None],
            np.asarray(positions)[:, None, None],
            np.arange(count)[None, None, :],
        )
    out = np.empty((len(positions), size, count))
    kernel(_seed_word(*key), np.asarray(positions, np.int64), out)
    return out


def _block(seed_word, positions, out):  # pragma: no cover
    # keyed_uniforms' words: position, item, then counter stirred in (``+ (v + 1) *
    # golden``, in uint64) and each mixed by SplitMix64's finalizer.
    golden, one = np.uint64(0x9E3779B97F4A7C15), np.uint64(1)
    m1, m2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
    s11, s27, s30, s31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)
    for p in range(out.shape[0]):
        z = seed_word + (np.uint64(positions[p]) + one) * golden
        z = (z ^ (z >> s30)) * m1
        z = (z ^ (z >> s27)) * m2
        zp = z ^ (z >> s31)
        for i in range(out.shape[1]):
            z = zp + (np.uint64(i) + one) * golden
            z = (z ^ (z >> s30)) * m1
            z = (z ^ (z >> s27)) * m2
            zi = z ^ (z >> s31)
            for c in range(out.shape[2]):
                z = zi + (np.uint64(c) + one) * golden
                z = (z ^ (z >> s30)) * m1
                z = (z ^ (z >> s27)) * m2
                z = z ^ (z >> s31)
                out[p, i, c] = np.float64(z >> s11) * 2.0**-53


def _try_block(kernel) -> None:
    out = np.empty((1, 2, 2))
    kernel(_seed_word(0, 0), np.zeros(1, np.int64), out)
    want = keyed_uniforms(0, 0, np.arange(2)[:, None], 0, np.arange(2)[None, :])
    if out[0].tobytes() != want.tobytes():
        raise OndaBatchesError("the compiled hash differs from keyed_uniforms")


_block_kernel = _kernels.CompileOnce(
    lambda: _kernels.jit(_block), _try_block, "compiled keyed draws (numpy hashes them)", log
)


#: Items hashed at once by a `BatchDraws` (more as a batch needs them).
_BLOCK = 32


def _batch_draws(key: tuple[int, int]) -> BatchDraws:
    """The [`BatchDraws`][ondabatches.transforms.BatchDraws] of ``key = (seed, index)``:
    this thread's last one if it has that key (the items of a batch ask it in turn)."""
    key = (int(key[0]), int(key[1]))
    draws = getattr(_LOCAL, "draws", None)
    if draws is None or draws.key != key:
        draws = _LOCAL.draws = BatchDraws(*key)
    return draws
