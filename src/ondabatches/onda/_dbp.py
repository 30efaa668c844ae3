"""The ``dbp`` format: second differences, zigzag, bit-packed in blocks of 64 samples.

A codec made for integer biosignals, picked by `benchmarks/codecs.py` (docs/codecs.md)
because none of the libraries compared keeps at most half of raw 16-bit EEG and decodes
1 GB/s per core at once: pcodec keeps less but decodes at about half that speed, blosc2
and zstd decode as fast but keep more. Band-limited signals sampled well above their
band change slowly, so a sample is close to its linear prediction from the two before
it: the residual ``x[t] - 2 x[t-1] + x[t-2]`` (the second difference) is small. Each
channel's residuals are zigzag-mapped to unsigned integers (0, -1, 1, -2, ... -> 0, 1,
2, 3, ...) and stored in blocks of 64 samples, each block in the fewest bits that hold
its largest value (``w`` bits per sample, ``w`` 64-bit words per block). Decoding is
shifts and two running sums, one pass that a compiled loop runs at several GB/s.

A file is the framed container of `._framed` (frames of ``frame_samples`` multichannel
samples, decoded independently, each frame's prediction starting from zero; an index
with a CRC-32 per frame, magic ``b"OBDP"``). A frame of ``C`` channels and ``n``
samples, ``nb = ceil(n / 64)`` blocks per channel::

    widths    C x nb bytes (u8, channel by channel), zero-padded to a multiple of 8
    words     u64 little-endian: each channel's blocks in turn, w words per block

Samples of 8, 16 or 32 bits (signed or not) are stored; the round trip is exact. With
numba (the ``fast`` extra) the frames are encoded and decoded by compiled loops; without
it (or with the settings' ``kernels="numpy"``) by numpy, with the same bytes and values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._errors import SampleFileError
from . import _kernels
from ._framed import FramedFormat, FrameIndex

__all__ = ["DbpFormat", "decode_frame_numpy", "encode_frame_numpy"]

log = logging.getLogger(__name__)

BLOCK = 64
#: The widest residual: a second difference of 32-bit samples needs 34 bits, zigzag 35.
MAX_WIDTH = 35
_U1, _U63 = np.uint64(1), np.uint64(63)


def _header_bytes(n_channels: int, n_blocks: int) -> int:
    return -(-n_channels * n_blocks // 8) * 8


def _residuals(block: np.ndarray) -> np.ndarray:
    """Zigzag second differences of ``block`` (channels x n), zero-padded to whole blocks,
    as uint64 of shape (channels, n_blocks, 64)."""
    channels, n = block.shape
    nb = -(-n // BLOCK)
    x = np.zeros((channels, nb * BLOCK + 2), dtype=np.int64)
    x[:, 2 : n + 2] = block
    e = x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]
    e[:, n:] = 0
    z = ((e << 1) ^ (e >> 63)).view(np.uint64)
    return z.reshape(channels, nb, BLOCK)


def _bit_lengths(m: np.ndarray) -> np.ndarray:
    w = np.zeros(m.shape, dtype=np.uint8)
    for k in range(MAX_WIDTH):
        w += m >= (_U1 << np.uint64(k))
    return w


def encode_frame_numpy(block: np.ndarray) -> bytes:
    """One frame's bytes (see the module), by numpy: ``block`` is channels x time."""
    z = _residuals(block)
    channels, nb, _ = z.shape
    widths = _bit_lengths(z.max(axis=2))
    w = widths.reshape(-1).astype(np.int64)
    starts = np.zeros(len(w), dtype=np.int64)
    np.cumsum(w[:-1], out=starts[1:])
    words = np.zeros(int(w.sum()), dtype=np.uint64)
    bit = np.arange(BLOCK, dtype=np.int64)[None, :] * w[:, None]
    index = starts[:, None] + (bit >> 6)
    off = (bit & 63).astype(np.uint64)
    values = z.reshape(-1, BLOCK)
    used = np.broadcast_to(w[:, None] > 0, values.shape)
    _or_sorted(words, index[used], (values << off)[used])
    spill = used & (off + w[:, None].astype(np.uint64) > 64)
    _or_sorted(words, index[spill] + 1, (values >> (np.uint64(64) - off))[spill])
    header = np.zeros(_header_bytes(channels, nb), dtype=np.uint8)
    header[: widths.size] = widths.reshape(-1)
    return header.tobytes() + words.astype("<u8").tobytes()


def _or_sorted(words: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
    """``words[index] |= values`` for a nondecreasing ``index`` (repeats OR'ed)."""
    if not len(index):
        return
    first = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    words[index[first]] |= np.bitwise_or.reduceat(values, first)


def _frame_error(piece: np.ndarray, channels: int, n: int, url: str, k: int) -> SampleFileError:
    head = _header_bytes(channels, -(-n // BLOCK))
    return SampleFileError(
        f"sample file {url} frame {k} holds {len(piece)} bytes that are not a dbp frame of "
        f"{channels} channels x {n} samples (block widths over {MAX_WIDTH} bits or a size "
        f"other than {head} + 8 x the widths' sum)"
    )


def _split(piece: np.ndarray, channels: int, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A frame's widths (channels x blocks) and words, or None if its size cannot fit."""
    nb = -(-n // BLOCK)
    head = _header_bytes(channels, nb)
    if len(piece) < head or (len(piece) - head) % 8:
        return None
    words = piece[head:].view("<u8")
    if not words.flags.aligned:
        words = words.copy()
    return piece[: channels * nb].reshape(channels, nb), words


def _frame_parts(
    piece: np.ndarray, channels: int, n: int, url: str, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """A frame's widths (channels x blocks) and words, checked to fit each other."""
    parts = _split(piece, channels, n)
    if parts is None or not _fits(*parts):
        raise _frame_error(piece, channels, n, url, k)
    return parts


def _fits(widths: np.ndarray, words: np.ndarray) -> bool:
    """Whether ``words`` holds exactly the words that ``widths`` give, none too wide
    (the compiled kernel checks the same before it decodes)."""
    return int(widths.sum(dtype=np.int64)) == len(words) and int(widths.max(initial=0)) <= MAX_WIDTH


def decode_frame_numpy(widths: np.ndarray, words: np.ndarray, n: int) -> np.ndarray:
    """The channels x ``n`` int64 samples of a frame's ``widths`` and ``words``, by numpy."""
    channels, nb = widths.shape
    w = widths.reshape(-1).astype(np.int64)
    starts = np.zeros(len(w), dtype=np.int64)
    np.cumsum(w[:-1], out=starts[1:])
    bit = np.arange(BLOCK, dtype=np.int64)[None, :] * w[:, None]
    last = max(len(words) - 1, 0)
    padded = words if len(words) else np.zeros(1, dtype=np.uint64)
    index = starts[:, None] + (bit >> 6)
    off = (bit & 63).astype(np.uint64)
    z = padded[np.minimum(index, last)] >> off
    spill = off + w[:, None].astype(np.uint64) > 64
    high = padded[np.minimum(index + 1, last)] << np.where(spill, np.uint64(64) - off, 0)
    z |= np.where(spill, high, 0)
    z &= (_U1 << w[:, None].astype(np.uint64)) - _U1
    e = (z >> _U1).astype(np.int64) ^ -(z & _U1).astype(np.int64)
    e = e.reshape(channels, nb * BLOCK)[:, :n]
    return np.cumsum(np.cumsum(e, axis=1), axis=1)


def _decode_channel(widths, words, hi, out, dst):  # pragma: no cover - compiled by numba
    # Samples 0:hi of one channel, whose blocks' words start at words[0], into out[dst:]: per
    # block, each value's bits (spilling into the next word where they cross one),
    # zigzag undone, two running sums. Returns the number of the channel's words.
    # (Its words come as a slice starting at 0: numba's loop is then 1.3x faster than
    # with a running offset into the frame's words.)
    p1 = np.int64(0)
    p2 = np.int64(0)
    pos = 0
    for b in range(widths.shape[0]):
        w = np.int64(widths[b])
        base = b * 64
        stop = min(64, hi - base)
        mask = (np.uint64(1) << np.uint64(w)) - np.uint64(1)
        if w == 0:
            for i in range(stop):
                p1 += p2
                out[dst + base + i] = p1
        else:
            for i in range(stop):
                bit = i * w
                at = pos + (bit >> 6)
                off = bit & 63
                z = words[at] >> np.uint64(off)
                if off + w > 64:
                    z |= words[at + 1] << np.uint64(64 - off)
                zi = np.int64(z & mask)
                p2 += (zi >> 1) ^ -(zi & 1)
                p1 += p2
                out[dst + base + i] = p1
        pos += w
    return pos


def _fits_compiled(widths, n_words):  # pragma: no cover - compiled by numba
    total = 0
    for c in range(widths.shape[0]):
        for b in range(widths.shape[1]):
            if widths[c, b] > MAX_WIDTH:
                return False
            total += widths[c, b]
    return total == n_words


def _decode(widths, words, hi, out, dst):  # pragma: no cover - compiled by numba
    # Samples 0:hi of each channel into out[:, dst:], once the widths are checked to fit
    # the words (`_fits`); False, with nothing decoded, where they do not.
    if not _FITS(widths, words.shape[0]):
        return False
    pos = 0
    for c in range(widths.shape[0]):
        pos += _CHANNEL(widths[c], words[pos:], hi, out[c], dst)
    return True


def _decode_window(encoded, offsets, frame, n_samples, first, start, stop, out):  # pragma: no cover
    # Samples start:stop of the frames first.. whose bytes are encoded[offsets[j]:
    # offsets[j + 1]] (frame j is frame first + j) into out (channels x stop - start), in
    # one call; -1, or the number of the first frame that is not a dbp frame.
    channels = out.shape[0]
    for j in range(offsets.shape[0] - 1):
        k = first + j
        a = k * frame
        n = min(frame, n_samples - a)
        nb = (n + 63) // 64
        head = (channels * nb + 7) // 8 * 8
        piece = encoded[offsets[j] : offsets[j + 1]]
        if piece.shape[0] < head or (piece.shape[0] - head) % 8:
            return k
        widths = piece[: channels * nb].reshape((channels, nb))
        words = piece[head:].view(np.uint64)
        s, e = max(a, start), min(a + n, stop)
        if s == a:
            ok = _FRAME(widths, words, e - a, out, a - start)
        else:  # the samples before s are decoded too (each depends on those before it)
            into = np.empty((channels, e - a), out.dtype)
            ok = _FRAME(widths, words, e - a, into, 0)
            out[:, : e - s] = into[:, s - a :]
        if not ok:
            return k
    return -1


def _encode(block, widths, words, buf):  # pragma: no cover - compiled by numba
    # The frame's block widths and words (encode_frame_numpy's, the same bytes); returns
    # the number of words written.
    channels, n = block.shape
    nb = widths.shape[1]
    pos = 0
    for c in range(channels):
        x1 = np.int64(0)
        x2 = np.int64(0)
        for b in range(nb):
            m = np.uint64(0)
            for i in range(64):
                t = b * 64 + i
                z = np.uint64(0)
                if t < n:
                    x = np.int64(block[c, t])
                    e = x - 2 * x1 + x2
                    x2 = x1
                    x1 = x
                    z = np.uint64((e << 1) ^ (e >> 63))
                buf[i] = z
                m |= z
            w = 0
            while w < 64 and (np.uint64(1) << np.uint64(w)) <= m:
                w += 1
            widths[c, b] = w
            for j in range(w):
                words[pos + j] = 0
            for i in range(64):
                if w > 0:
                    bit = i * w
                    at = pos + (bit >> 6)
                    off = bit & 63
                    words[at] |= buf[i] << np.uint64(off)
                    if off + w > 64:
                        words[at + 1] |= buf[i] >> np.uint64(64 - off)
            pos += w
    return pos


#: The compiled `_decode_channel`, `_fits_compiled` and `_decode`, which the kernels
#: call (set before they compile).
_CHANNEL: Callable[..., int] | None = None
_FITS: Callable[..., bool] | None = None
_FRAME: Callable[..., bool] | None = None


def _build_decode() -> Callable[..., None]:
    global _CHANNEL, _FITS, _FRAME
    _CHANNEL = _kernels.jit(_decode_channel)  # type: ignore[arg-type]
    _FITS = _kernels.jit(_fits_compiled)  # type: ignore[arg-type]
    _FRAME = _kernels.jit(_decode)  # type: ignore[arg-type]
    return _kernels.jit(_decode_window)


def _build_encode() -> Callable[..., None]:
    return _kernels.jit(_encode)  # type: ignore[arg-type]


def _try_decode(kernel: Callable[..., None]) -> None:
    # One frame of one zero sample: a width of 0 (and 7 bytes of padding), no words.
    offsets = np.array([0, 8], dtype=np.int64)
    if kernel(np.zeros(8, np.uint8), offsets, 1, 1, 0, 0, 1, np.empty((1, 1), np.int16)) != -1:
        raise SampleFileError("the compiled dbp decoder refused a valid test frame: numpy decodes")


def _try_encode(kernel: Callable[..., None]) -> None:
    kernel(np.ones((1, 3), np.int16), np.empty((1, 1), np.uint8), np.empty(MAX_WIDTH, np.uint64),
           np.empty(64, np.uint64))  # fmt: skip


_decoder = _kernels.CompileOnce(
    _build_decode, _try_decode, "compiled dbp decoder (numpy's runs)", log
)
_encoder = _kernels.CompileOnce(
    _build_encode, _try_encode, "compiled dbp encoder (numpy's runs)", log
)


def _compiled(once: _kernels.CompileOnce) -> Callable[..., None] | None:
    return once() if _kernels._enabled() else None


@dataclass(frozen=True, slots=True)
class DbpFormat(FramedFormat):
    """``"dbp"``: frames of ``frame_samples`` multichannel samples, each channel's second
    differences bit-packed in blocks of 64 (see `ondabatches.onda._dbp`).
    ``frame_samples`` as in `FramedFormat`
    (default 2048).
    """

    NAME = "dbp"
    MAGIC = b"OBDP"
    STORES = ("int8", "uint8", "int16", "uint16", "int32", "uint32")

    def encode_frame(self, block: np.ndarray) -> bytes:
        kernel = _compiled(_encoder)
        if kernel is None:
            return encode_frame_numpy(block)
        channels, n = block.shape
        nb = -(-n // BLOCK)
        header = np.zeros(_header_bytes(channels, nb), dtype=np.uint8)
        widths = header[: channels * nb].reshape(channels, nb)
        words = np.empty(channels * nb * MAX_WIDTH, dtype=np.uint64)
        used = kernel(block, widths, words, np.empty(BLOCK, np.uint64))
        return header.tobytes() + words[:used].astype("<u8").tobytes()

    def decode_frame(self, piece: np.ndarray, block: np.ndarray, url: str, k: int) -> None:
        self.decode_into(piece, block, 0, block.shape[1], block.shape[1], url, k)

    def decode_into(
        self, piece: np.ndarray, out: np.ndarray, lo: int, hi: int, n: int, url: str, k: int
    ) -> None:
        kernel = _compiled(_decoder)
        if kernel is None:
            widths, words = _frame_parts(piece, out.shape[0], n, url, k)
            out[:] = decode_frame_numpy(widths, words, n)[:, lo:hi]
        elif kernel(piece, np.array([0, len(piece)]), n, n, 0, lo, hi, out) != -1:
            raise _frame_error(piece, out.shape[0], n, url, k)

    def decode_frames(
        self, encoded: np.ndarray, offsets: np.ndarray, index: FrameIndex, first: int,
        rows: range, out: np.ndarray, url: str,
    ) -> None:  # fmt: skip
        kernel = _compiled(_decoder)
        if kernel is None or not encoded.flags.aligned:
            FramedFormat.decode_frames(self, encoded, offsets, index, first, rows, out, url)
            return
        frame, n_samples = index.frame_samples, index.n_samples
        bad = kernel(encoded, offsets, frame, n_samples, first, rows.start, rows.stop, out)
        if bad != -1:
            j = bad - first
            n = min(frame, n_samples - bad * frame)
            piece = encoded[offsets[j] : offsets[j + 1]]
            raise _frame_error(piece, out.shape[0], n, url, bad)
