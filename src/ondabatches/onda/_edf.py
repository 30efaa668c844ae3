"""The ``edf`` and ``bdf`` formats: EDF, EDF+ and BDF files served in place, as they are.

An Onda signal of this format points at the original recording: its ``file_path`` is
the file's path or URL followed by a fragment naming the EDF signals it covers, by
their 0-based numbers in the file's header (annotation channels counted, as the
header counts them)::

    /data/night.edf#signals=0,1,2,3        s3://clinic/2024/p17.bdf#signals=5

Without a fragment the signal covers every non-annotation signal of the file. The
fragment keeps one ``file_path`` per Onda signal, as with the one-file-per-signal
formats (statistics and label files are keyed by it), and it needs nothing beyond
the ``onda.signal@2`` columns, so such a table is an ordinary Onda table.

What the format needs beyond that, the record layout (header size, number of data
records, samples per record of every signal, record duration), it reads from the
file's header: 256 bytes plus 256 per signal, parsed once per process and cached per
path, size and modification time (remote files: per path, taken as immutable, like
the other formats' metadata).

Layout and reads
----------------
After the header, an EDF file is ``n_records`` data records of ``record_bytes`` each;
a record holds, signal after signal, ``samples_per_record[i]`` little-endian samples
of signal ``i`` (2-byte two's complement for EDF, 3-byte for BDF). The signals of one
Onda signal share one rate, so one number of samples per record, ``spr``: samples
``rows`` lie in records ``rows.start // spr`` through ``(rows.stop - 1) // spr``. A
window reads only those records, and in each only the bytes from its first selected
signal to the end of its last: one ranged read where the gaps between records are
small (always on local disk), else ranges merged by
`fsspec.utils.merge_offset_ranges` and fetched with ``cat_ranges``.
`materialize_batch` reads the windows of local files a batch at a time instead (one
``preadv`` of each window's records, every check once per signal), and decodes each
straight from the records into its output rows with one compiled pass
(`._edf_kernels`): the same values as this format's `read` followed by the decode.

Values
------
The encoded values are the file's digital values, unchanged: EDF's 16-bit integers as
``int16``, BDF's 24-bit integers sign-extended into ``int32``. These are exactly what
the importer (`ondabatches.importing`) stores, and the Onda encoding
(``sample_resolution_in_unit``, ``sample_offset_in_unit``) comes from the table as for
every format: [`ondabatches.importing.edf_signals`][ondabatches.importing.edf_signals]
writes the importer's own. The importer groups channels by rate *and* calibration, so
channels of one rate with different gains or offsets are already separate signals
(``eeg``, ``eeg_2``), each exact: nothing is re-encoded, in the import or here.

Refused, with a [`SampleFileError`][ondabatches._errors.SampleFileError] naming the
file: discontinuous files (EDF+D, BDF+D: their records have gaps in time), a fragment
naming an annotation channel or signals of different rates, a table whose channels, rate
or sample type disagree with the header, and a file that is not exactly its header plus
its records (cut short, or grown). [`EdfFormat.write`][ondabatches.onda.EdfFormat.write]
raises [`ReadOnlyFormatError`][ondabatches._errors.ReadOnlyFormatError]: these files are
written by the recording systems, not by Onda.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

import fsspec
import fsspec.utils
import numpy as np

from .._errors import ArgumentError, ReadOnlyFormatError, SampleFileError
from ._cache import cached_range, get_cache
from ._descriptors import opened
from ._format_base import SampleFormat
from ._lpcm import file_meta, read_at, remote_size, url_of
from ._samples import SamplesInfo
from ._storage import check_regular, is_local

__all__ = ["EdfFormat", "EdfLayout", "edf_signal_path", "split_edf_path"]

#: The labels of EDF+/BDF+ annotation channels (not signals).
ANNOTATION_LABELS = frozenset({"EDF Annotations", "BDF Annotations"})

_FRAGMENT = re.compile(r"#signals=([0-9]+(?:,[0-9]+)*)$")

# Remote reads merge ranges whose gaps are at most this many bytes: fetching a gap costs
# less than another request up to about this size.
_MAX_GAP = 256 << 10


def split_edf_path(path: str) -> tuple[str, tuple[int, ...] | None]:
    """The file and the header signal numbers of an in-place ``file_path``.

    Examples
    --------
    >>> split_edf_path("s3://b/night.edf#signals=0,2")
    ('s3://b/night.edf', (0, 2))
    >>> split_edf_path("/data/night.edf")
    ('/data/night.edf', None)
    """
    match = _FRAGMENT.search(path)
    if match is None:
        return path, None
    return path[: match.start()], tuple(int(i) for i in match.group(1).split(","))


def edf_signal_path(file: str, signals: tuple[int, ...] | list[int]) -> str:
    """The ``file_path`` of the Onda signal covering header signals ``signals`` of ``file``.

    >>> edf_signal_path("/data/night.edf", [0, 1])
    '/data/night.edf#signals=0,1'
    """
    return f"{file}#signals={','.join(str(int(i)) for i in signals)}"


@dataclass(frozen=True, slots=True)
class EdfLayout:
    """What the header of an EDF/EDF+/BDF file says about where its samples are.

    ``n_records`` is ``-1`` where the header leaves it unknown (the file's size then
    tells). ``offsets[i]`` is where signal ``i`` starts inside a record, in bytes.
    """

    kind: str  # "edf" or "bdf"
    header_bytes: int
    n_records: int
    record_seconds: float
    labels: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    offsets: tuple[int, ...]
    record_bytes: int
    discontinuous: bool

    @property
    def width(self) -> int:
        """Bytes of one sample: 2 for EDF, 3 for BDF."""
        return 3 if self.kind == "bdf" else 2

    @property
    def annotation(self) -> tuple[bool, ...]:
        """Whether each header signal is an annotation channel."""
        return tuple(label in ANNOTATION_LABELS for label in self.labels)

    @property
    def data_signals(self) -> tuple[int, ...]:
        """The header numbers of the signals that are not annotation channels."""
        return tuple(i for i, a in enumerate(self.annotation) if not a)

    @property
    def nbytes(self) -> int:  # what the metadata cache counts
        return 64 * len(self.labels)

    def records_in(self, size: int, url: str) -> int:
        """The number of data records of a file of ``size`` bytes: the header's, which
        the size must match exactly (else
        [`SampleFileError`][ondabatches._errors.SampleFileError])."""
        body = size - self.header_bytes
        if self.n_records < 0:
            if body < 0 or (self.record_bytes and body % self.record_bytes):
                raise SampleFileError(
                    f"EDF file {url} holds {size} bytes, not its {self.header_bytes}-byte header "
                    f"plus a whole number of {self.record_bytes}-byte data records"
                )
            return body // self.record_bytes if self.record_bytes else 0
        expected = self.header_bytes + self.n_records * self.record_bytes
        if size != expected:
            how = "cut short" if size < expected else "longer than its header says"
            raise SampleFileError(
                f"EDF file {url} holds {size} bytes ({how}); expected {expected} bytes = "
                f"{self.header_bytes}-byte header + {self.n_records} data records x "
                f"{self.record_bytes} bytes"
            )
        return self.n_records


def _field(raw: bytes) -> str:
    return raw.decode("latin-1").strip()


def _number(raw: bytes, url: str, what: str, kind: type = int) -> Any:
    text = _field(raw)
    try:
        return kind(text)
    except ValueError:
        raise SampleFileError(
            f"EDF file {url}: header field {what} is {text!r}, not a number"
        ) from None


def header_size(first: bytes, url: str) -> int:
    """The header's size in bytes, from its first 256 bytes."""
    if len(first) < 256:
        raise SampleFileError(
            f"EDF file {url} holds {len(first)} bytes, shorter than the 256-byte header"
        )
    n_signals = _number(first[252:256], url, "'number of signals'")
    if n_signals < 1:
        raise SampleFileError(f"EDF file {url}: its header declares {n_signals} signals")
    return 256 * (n_signals + 1)


def parse_edf_header(header: bytes, url: str) -> EdfLayout:
    """The `EdfLayout` of a whole header (256 bytes plus 256 per signal)."""
    size = header_size(header[:256], url)
    if len(header) < size:
        raise SampleFileError(
            f"EDF file {url} holds {len(header)} bytes, shorter than its {size}-byte header"
        )
    if header[:1] == b"\xff" and header[1:8] == b"BIOSEMI":
        kind = "bdf"
    elif header[:8] == b"0       ":
        kind = "edf"
    else:
        raise SampleFileError(
            f"EDF file {url}: version field {header[:8]!r} is neither EDF's '0' nor BDF's "
            "'\\xffBIOSEMI'"
        )
    ns = size // 256 - 1
    reserved = header[192:236]
    n_records = _number(header[236:244], url, "'number of data records'")
    record_seconds = _number(header[244:252], url, "'duration of a data record'", float)
    base = 256
    # Per-signal fields are columns (every signal's label, then every transducer, ...):
    # label 16, transducer 80, dimension 8, physical min/max 8+8, digital min/max 8+8,
    # prefiltering 80, samples per record 8, reserved 32 bytes.
    labels = tuple(_field(header[base + 16 * k : base + 16 * (k + 1)]) for k in range(ns))
    spr_at = base + ns * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80)
    spr = tuple(
        _number(header[spr_at + 8 * k : spr_at + 8 * (k + 1)], url, f"'samples per record' {k}")
        for k in range(ns)
    )
    if any(s < 0 for s in spr):
        raise SampleFileError(f"EDF file {url}: negative samples per record {list(spr)}")
    width = 3 if kind == "bdf" else 2
    offsets = tuple(int(x) for x in np.concatenate([[0], np.cumsum(spr)[:-1]]) * width)
    return EdfLayout(
        kind=kind,
        header_bytes=size,
        n_records=n_records,
        record_seconds=record_seconds,
        labels=labels,
        samples_per_record=spr,
        offsets=offsets,
        record_bytes=sum(spr) * width,
        discontinuous=reserved.startswith((b"EDF+D", b"BDF+D")),
    )


def _read_header(read: Any, url: str) -> EdfLayout:
    first = bytes(read(0, 256))
    size = header_size(first, url)
    return parse_edf_header(first + bytes(read(256, size)), url)


@dataclass(frozen=True, slots=True)
class _Selection:
    offsets: np.ndarray  # byte offset of each channel in a record, from ``lo``
    lo: int  # first byte of the selected signals in a record
    hi: int  # one past their last byte
    spr: int


@dataclass(frozen=True, slots=True)
class EdfFormat(SampleFormat):
    """EDF/EDF+ (``kind="edf"``, registered as ``"edf"``) or BDF/BDF+ (``kind="bdf"``,
    registered as ``"bdf"``) files read in place (see the module documentation).

    Examples
    --------
    >>> import pyedflib.data, fsspec
    >>> path = pyedflib.data.get_generator_filename()
    >>> info = SamplesInfo("misc", ("squarewave", "ramp"), "microvolt", 1.0, 0.0, "int16", 200.0)
    >>> EdfFormat().read(fsspec.filesystem("file"), path + "#signals=0,1", info,
    ...                  range(195, 205), 120000).shape  # across a record boundary
    (2, 10)
    """

    kind: str = "edf"

    def __post_init__(self) -> None:
        if self.kind not in ("edf", "bdf"):
            raise ArgumentError(f"EdfFormat kind must be 'edf' or 'bdf', got {self.kind!r}")

    # ------------------------------------------------------------------ metadata

    def layout(self, fs: fsspec.AbstractFileSystem, file: str) -> tuple[EdfLayout, int]:
        """The file's header layout (cached) and its current size."""
        url = url_of(fs, file)
        if is_local(fs):
            st = os.stat(file)
            check_regular(file, st)
            size = st.st_size
            key: tuple[Any, ...] = ("edf-header", size, st.st_mtime_ns)

            def compute() -> EdfLayout:
                with opened(file) as (fd, _):
                    return _read_header(lambda a, b: _read_upto(fd, a, b, url), url)
        else:
            size = remote_size(fs, file)
            key = ("edf-header",)

            def compute() -> EdfLayout:
                return _read_header(lambda a, b: fs.cat_file(file, start=a, end=min(b, size)), url)

        return file_meta(fs, file, key, compute), size

    def _select(
        self, layout: EdfLayout, signals: tuple[int, ...] | None, info: SamplesInfo, url: str
    ) -> _Selection:
        if layout.kind != self.kind:
            raise SampleFileError(
                f"EDF file {url} is a {layout.kind.upper()} file; its signal says "
                f"file_format {self.kind!r} (use {layout.kind!r})"
            )
        if layout.discontinuous:
            raise SampleFileError(
                f"EDF file {url} is discontinuous ({layout.kind.upper()}+D): its records have "
                "gaps in time, which an Onda signal cannot describe; only continuous files "
                "(EDF, EDF+C, BDF, BDF+C) are served in place"
            )
        chosen = layout.data_signals if signals is None else signals
        bad = [i for i in chosen if i >= len(layout.labels)]
        if bad:
            raise SampleFileError(
                f"EDF file {url} has {len(layout.labels)} signals; its signal names "
                f"header signals {bad}"
            )
        notes = [i for i in chosen if layout.annotation[i]]
        if notes:
            raise SampleFileError(
                f"EDF file {url}: header signals {notes} are annotation channels, not samples"
            )
        if len(chosen) != info.n_channels:
            raise SampleFileError(
                f"EDF file {url}: the signal covers header signals {list(chosen)} "
                f"({len(chosen)}), but has {info.n_channels} channels {list(info.channels)}"
            )
        want = "int32" if self.kind == "bdf" else "int16"
        if info.sample_type != want:
            raise SampleFileError(
                f"EDF file {url}: {self.kind.upper()} samples are read as {want}; the signal "
                f"says sample_type {info.sample_type!r}"
            )
        sprs = {layout.samples_per_record[i] for i in chosen}
        if len(sprs) != 1:
            raise SampleFileError(
                f"EDF file {url}: header signals {list(chosen)} have different samples per "
                f"record {[layout.samples_per_record[i] for i in chosen]}; one Onda signal "
                "holds channels of one rate"
            )
        spr = sprs.pop()
        rate = spr / layout.record_seconds if layout.record_seconds > 0 else math.nan
        if not math.isclose(rate, info.sample_rate, rel_tol=1e-9):
            raise SampleFileError(
                f"EDF file {url}: header signals {list(chosen)} hold {spr} samples per "
                f"{layout.record_seconds:g} s record ({rate:g} Hz); the signal says "
                f"sample_rate {info.sample_rate:g} Hz"
            )
        starts = np.array([layout.offsets[i] for i in chosen], dtype=np.int64)
        lo = int(starts.min())
        hi = int(starts.max()) + spr * layout.width
        return _Selection(starts - lo, lo, hi, spr)

    def _check_records(
        self, layout: EdfLayout, size: int, spr: int, n_total: int, url: str
    ) -> None:
        records = layout.records_in(size, url)
        if n_total > records * spr:
            raise SampleFileError(
                f"EDF file {url} holds {records} data records of {spr} samples "
                f"({records * spr} samples per channel, {size} bytes); expected {n_total} "
                f"samples = {-(-n_total // spr) if spr else '?'} records, "
                f"{layout.header_bytes + -(-n_total // max(spr, 1)) * layout.record_bytes} bytes"
            )

    # ------------------------------------------------------------------ the interface

    def prepare(
        self, fs: fsspec.AbstractFileSystem, path: str, info: SamplesInfo, n_total: int
    ) -> tuple[str, str, EdfLayout, _Selection]:
        """The file, its URL, its layout and the signal's selection, every check done:
        [`SampleFileError`][ondabatches._errors.SampleFileError] for a file that is not
        its header plus its records, or whose records hold fewer than ``n_total``
        samples of the signal's EDF signals."""
        file, signals = split_edf_path(path)
        url = url_of(fs, file)
        layout, size = self.layout(fs, file)
        sel = self._select(layout, signals, info, url)
        self._check_records(layout, size, sel.spr, n_total, url)
        return file, url, layout, sel

    def check_size(
        self, fs: fsspec.AbstractFileSystem, path: str, info: SamplesInfo, n_total: int
    ) -> None:
        """Refuse a file that is not its header plus its records, or whose records hold
        fewer than ``n_total`` samples of the signal's EDF signals."""
        self.prepare(fs, path, info, n_total)

    def read(
        self, fs: fsspec.AbstractFileSystem, path: str, info: SamplesInfo, rows: range, n_total: int
    ) -> np.ndarray:
        file, url, layout, sel = self.prepare(fs, path, info, n_total)
        n = len(rows)
        if n == 0 or sel.spr == 0:
            return np.empty((info.n_channels, n), dtype=info.dtype)
        start, stop, n_rec = window_bytes(layout, sel, rows)
        if is_local(fs):
            with opened(file) as (fd, _):
                buf = read_at(fd, start, stop - start, url)
        else:
            span = sel.hi - sel.lo
            buf = _read_remote(fs, file, url, start, stop, layout.record_bytes, span, n_rec)
        return deinterleave(buf, layout, sel, rows, info.dtype)

    def write(self, file: BinaryIO, data: np.ndarray, info: SamplesInfo) -> None:
        """Refused: EDF and BDF files are served as they are, never written by Onda."""
        raise ReadOnlyFormatError(
            f"file_format {self.kind!r} serves existing {self.kind.upper()} files in place and "
            "does not write them; store the samples as 'lpcm' or 'lpcm.zst'"
        )


def window_bytes(layout: EdfLayout, sel: _Selection, rows: range) -> tuple[int, int, int]:
    """The bytes ``start:stop`` of the file that hold rows ``rows`` (not empty) of the
    selected signals, and how many records they cover: from the first selected byte of
    the first record to the last of the last."""
    first, last = rows.start // sel.spr, (rows.stop - 1) // sel.spr + 1
    start = layout.header_bytes + first * layout.record_bytes + sel.lo
    stop = layout.header_bytes + (last - 1) * layout.record_bytes + sel.hi
    return start, stop, last - first


def deinterleave(
    buf: np.ndarray, layout: EdfLayout, sel: _Selection, rows: range, dtype: np.dtype
) -> np.ndarray:
    """The encoded samples (channels x time, of ``dtype``) of rows ``rows`` from the bytes
    `window_bytes` names, ``buf``."""
    spr, rec = sel.spr, layout.record_bytes
    n_rec = (rows.stop - 1) // spr + 1 - rows.start // spr
    out = np.empty((len(sel.offsets), n_rec, spr), dtype=dtype)
    for c, offset in enumerate(sel.offsets.tolist()):
        if layout.width == 2:
            out[c] = np.ndarray((n_rec, spr), "<i2", buf, offset, (rec, 2))
        else:
            _bdf_into(out[c], np.ndarray((n_rec, spr, 3), np.uint8, buf, offset, (rec, 3, 1)))
    skip = rows.start % spr
    return out.reshape(len(sel.offsets), n_rec * spr)[:, skip : skip + len(rows)]


def _read_upto(fd: int, start: int, stop: int, url: str) -> np.ndarray:
    """Bytes ``start:stop`` of a local file, fewer where it ends sooner (header reads)."""
    size = os.fstat(fd).st_size
    return read_at(fd, start, max(0, min(stop, size) - start), url)


def _read_remote(
    fs: fsspec.AbstractFileSystem, file: str, url: str, start: int, stop: int, rec: int,
    span: int, n_rec: int,
) -> np.ndarray:  # fmt: skip
    """Bytes ``start:stop`` of a remote file, fetching only each record's ``span`` bytes
    (gaps of at most ``_MAX_GAP`` fetched too, to merge the ranges); the bytes between
    merged ranges are left unset, since no selected sample lies there."""
    if rec - span <= _MAX_GAP or n_rec == 1:
        data = cached_range(fs, file, start, stop, lambda: fs.cat_file(file, start=start, end=stop))
        if len(data) != stop - start:
            raise SampleFileError(
                f"EDF file {url} returned {len(data)} bytes for range {start}..{stop - 1}, "
                f"expected {stop - start} (was it changed since it was first read?)"
            )
        return np.frombuffer(data, dtype=np.uint8)
    starts = [start + k * rec for k in range(n_rec)]
    _, merged_starts, merged_ends = fsspec.utils.merge_offset_ranges(
        [file] * n_rec, starts, [s + span for s in starts], max_gap=_MAX_GAP, sort=False
    )
    if get_cache() is None:
        pieces = fs.cat_ranges([file] * len(merged_starts), merged_starts, merged_ends)
    else:
        pieces = [
            cached_range(fs, file, a, b, lambda a=a, b=b: fs.cat_file(file, start=a, end=b))
            for a, b in zip(merged_starts, merged_ends, strict=True)
        ]
    buf = np.empty(stop - start, dtype=np.uint8)
    for a, b, piece in zip(merged_starts, merged_ends, pieces, strict=True):
        if isinstance(piece, Exception):
            raise piece
        if len(piece) != b - a:
            raise SampleFileError(
                f"EDF file {url} returned {len(piece)} bytes for range {a}..{b - 1}, "
                f"expected {b - a} (was it changed since it was first read?)"
            )
        buf[a - start : b - start] = np.frombuffer(piece, dtype=np.uint8)
    return buf


def _bdf_into(out: np.ndarray, raw: np.ndarray) -> None:
    """Little-endian 3-byte two's complement samples (``raw[..., 3]``) into int32 ``out``."""
    np.copyto(out, raw[..., 2].view(np.int8), casting="unsafe")
    out <<= 8
    out |= raw[..., 1]
    out <<= 8
    out |= raw[..., 0]
