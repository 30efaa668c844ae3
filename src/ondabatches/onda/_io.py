"""Loading a signal's samples (all, a time span, or exact sample rows) and storing samples."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import ArgumentTypeError, SampleFileError, SpanError
from ._formats import format_from_path, get_format
from ._lpcm import forget_file
from ._samples import Samples, SamplesInfo
from ._signal import Signal
from ._storage import atomic_writer, filesystem_for, storage_errors
from ._timespan import TimeSpan, sample_range

__all__ = ["SignalLike", "load", "load_rows", "store"]

#: A [`Signal`][ondabatches.onda.Signal], or a mapping with the ``onda.signal@2``
#: columns (a table row).
SignalLike = Signal | Mapping[str, Any]


def _as_signal(signal: SignalLike) -> Signal:
    return signal if isinstance(signal, Signal) else Signal.from_row(signal)


def _describe(signal: Signal) -> str:
    return (
        f"signal {signal.sensor_label!r} of recording {signal.recording} "
        f"({signal.file_path}, {signal.n_samples} samples)"
    )


def load(
    signal: SignalLike,
    span: TimeSpan | None = None,
    *,
    encoded: bool = False,
    dtype: Any = np.float64,
    storage_options: Mapping[str, Any] | None = None,
) -> Samples:
    """Load a signal's samples, or those of ``span``, reading only the bytes needed.

    Parameters
    ----------
    signal:
        A [`Signal`][ondabatches.onda.Signal] or a row of an ``onda.signal@2`` table.
    span:
        Relative to the signal's first sample (as in Onda.jl), not to the recording;
        selects ``sample_range(span, sample_rate)``. ``None`` loads everything.
    encoded:
        Return the stored values (``info.sample_type``) instead of decoding them.
    dtype:
        The dtype of decoded samples.
    storage_options:
        fsspec options for this call (see
        [`set_storage_options`][ondabatches.onda.set_storage_options]).

    Raises
    ------
    SpanError
        ``span`` reaches outside the signal.
    SampleFileError, SampleFileNotFoundError, StorageError, UnknownFormatError

    Examples
    --------
    >>> import tempfile, uuid
    >>> info = SamplesInfo("eeg", ("c3", "c4"), "uV", 0.5, 0.0, "int16", 10.0)
    >>> path = tempfile.mkdtemp() + "/a.lpcm"
    >>> store(path, Samples(np.arange(60, dtype=np.int16).reshape(2, 30), info, encoded=True))
    >>> sig = Signal(uuid.UUID(int=1), path, "lpcm", TimeSpan(0, 3 * 10**9), "eeg", info)
    >>> load(sig, TimeSpan(10**9, 12 * 10**8), dtype=np.float32).data
    array([[ 5. ,  5.5],
           [20. , 20.5]], dtype=float32)
    """
    sig = _as_signal(signal)
    if span is None:
        rows = range(sig.n_samples)
    else:
        span = TimeSpan.from_value(span)
        if span.start < 0 or sample_range(span, sig.sample_rate).stop > sig.n_samples:
            raise SpanError(
                f"span {span} (relative to the signal's first sample) is not inside "
                f"{_describe(sig)}, whose samples cover {TimeSpan(0, sig.span.duration)}"
            )
        rows = sample_range(span, sig.sample_rate)
    return _load(sig, rows, encoded, dtype, storage_options)


def load_rows(
    signal: SignalLike,
    rows: range,
    *,
    encoded: bool = False,
    dtype: Any = np.float64,
    storage_options: Mapping[str, Any] | None = None,
) -> Samples:
    """Load the samples at 0-based indices ``rows`` (a ``range`` with step 1).

    The exact-index counterpart of [`load`][ondabatches.onda.load], for callers that
    computed the rows themselves (e.g. ``window_sample_range``).

    Examples
    --------
    >>> import tempfile, uuid
    >>> info = SamplesInfo("eeg", ("c3",), "uV", 1.0, 0.0, "float32", 10.0)
    >>> path = tempfile.mkdtemp() + "/a.lpcm.zst"
    >>> store(path, Samples(np.arange(30, dtype=np.float32)[None], info, encoded=True))
    >>> sig = Signal(uuid.UUID(int=1), path, "lpcm.zst", TimeSpan(0, 3 * 10**9), "eeg", info)
    >>> load_rows(sig, range(28, 30), encoded=True).data
    array([[28., 29.]], dtype=float32)
    """
    sig = _as_signal(signal)
    if not isinstance(rows, range) or rows.step != 1:
        raise ArgumentTypeError(f"rows must be a range with step 1, got {rows!r}")
    if not 0 <= rows.start <= rows.stop <= sig.n_samples:
        raise SpanError(f"samples {rows.start}..{rows.stop - 1} are not inside {_describe(sig)}")
    return _load(sig, rows, encoded, dtype, storage_options)


def check_rows(
    signal: SignalLike, rows: range, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Refuse rows that the signal's file cannot hold, before anything is allocated.

    A table whose ``sample_rate`` or ``span`` is far off (``sample_rate=1e9`` over a
    61 KB file) describes windows of gigabytes: comparing the signal's samples with
    the file's size (its seek table's, for ``lpcm.zst``) turns that into a
    [`SampleFileError`][ondabatches._errors.SampleFileError] naming the signal, instead
    of an allocation that fails (``MemoryError``, a full ``/dev/shm``) or succeeds for
    nothing: every format's [`check_size`][ondabatches.abc.SampleFormat.check_size].
    """
    sig = _as_signal(signal)
    if not 0 <= rows.start <= rows.stop <= sig.n_samples:
        raise SpanError(f"samples {rows.start}..{rows.stop - 1} are not inside {_describe(sig)}")
    fmt = get_format(sig.file_format)
    fs, path = filesystem_for(sig.file_path, storage_options)
    context = f" ({_describe(sig)}, sample_rate {sig.sample_rate} Hz, span {sig.span})"
    with storage_errors(sig.file_path, context=context):
        try:
            fmt.check_size(fs, path, sig.info, sig.n_samples)
        except SampleFileError as exc:
            raise SampleFileError(f"{exc}{context}") from exc


def _load(
    sig: Signal,
    rows: range,
    encoded: bool,
    dtype: Any,
    storage_options: Mapping[str, Any] | None,
) -> Samples:
    data = read_encoded(
        sig.file_path, sig.file_format, sig.info, rows, sig.n_samples, sig.recording,
        storage_options,
    )  # fmt: skip
    if encoded:
        return Samples(data, sig.info, encoded=True)
    return Samples(decode_into(data, sig.info, dtype), sig.info, encoded=False)


def read_encoded(
    file_path: str,
    file_format: str,
    info: SamplesInfo,
    rows: range,
    n_total: int,
    recording: Any,
    storage_options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Encoded samples ``rows`` (checked by the caller) of a signal file, channels x time.

    What [`load_rows`][ondabatches.onda.load_rows] reads, without building a
    [`Signal`][ondabatches.onda.Signal] or [`Samples`][ondabatches.onda.Samples]:
    materialization calls it for every window.
    """
    fmt = get_format(file_format)
    fs, path = filesystem_for(file_path, storage_options)
    try:
        data = fmt.read(fs, path, info, rows, n_total)
    except Exception as exc:
        _raise_read_error(exc, file_path, recording)
    if data.shape != (info.n_channels, len(rows)):
        raise SampleFileError(
            f"file_format {file_format!r} read an array of shape {data.shape} from "
            f"{file_path}; expected {(info.n_channels, len(rows))} "
            f"(channels x samples {rows.start}..{rows.stop - 1})"
        )
    return data if data.dtype == info.dtype else data.astype(info.dtype)


def _raise_read_error(exc: Exception, file_path: str, recording: Any) -> None:
    """Raise ``exc`` again as our error naming the file and whose file it is."""
    context = f" (signal of recording {recording})"
    with storage_errors(file_path, context=context):
        if isinstance(exc, SampleFileError):
            # The format names the file; say whose file it is, as storage errors do.
            raise SampleFileError(f"{exc}{context}") from exc
        raise exc


def decode_into(data: np.ndarray, info: SamplesInfo, dtype: Any = np.float64) -> np.ndarray:
    """[`decode`][ondabatches.onda.decode] in one pass from ``data`` into a new array of ``dtype``.

    Gives the same values as ``decode`` (each input is cast to ``dtype`` first) without
    its intermediate copy. The result keeps the memory order of ``data`` (time-major
    for a window read from interleaved LPCM): reordering would cost a second pass, and
    stacking a batch copies anyway.
    """
    dtype = np.dtype(dtype)
    if info.is_identity_encoding:
        return data.astype(dtype, order="K")
    out = np.multiply(data, info.sample_resolution_in_unit, dtype=dtype, casting="unsafe")
    if info.sample_offset_in_unit != 0.0:
        np.add(out, dtype.type(info.sample_offset_in_unit), out=out)
    return out


def store(
    path: str | os.PathLike[str],
    samples: Samples,
    *,
    file_format: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write ``samples`` (encoding them first if they are decoded) to a sample file.

    ``file_format`` defaults to the one named by the extension (``.lpcm``,
    ``.lpcm.zst``, or a registered format's name). The write is atomic: the file
    appears complete or not at all, also when writing fails midway.

    Examples
    --------
    >>> import tempfile
    >>> info = SamplesInfo("eeg", ("c3",), "uV", 0.5, 0.0, "int16", 10.0)
    >>> path = tempfile.mkdtemp() + "/a.lpcm"
    >>> store(path, Samples(np.array([[1.0, 2.0]]), info))
    >>> from pathlib import Path
    >>> Path(path).read_bytes()
    b'\\x02\\x00\\x04\\x00'
    """
    url = os.fspath(path)
    fmt = get_format(file_format if file_format is not None else format_from_path(url))
    data = samples.encode().data
    fs, fs_path = filesystem_for(url, storage_options)
    with storage_errors(url, action="write"):
        try:
            with atomic_writer(fs, fs_path) as file:
                fmt.write(file, data, samples.info)
        finally:
            forget_file(fs, fs_path)
