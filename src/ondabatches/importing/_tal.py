"""EDF+/BDF+ annotation channels ("EDF Annotations"): time-stamped annotation lists (TALs).

Each data record's annotation channel holds TALs, ``+onset[\\x15duration]\\x14text\\x14
...\\x14\\x00``, the first of which (with no text) keeps time: the record's start, in
seconds from the header's start date and time (which has whole seconds only). The
first record's is therefore the file's sub-second start. pyedflib reads them only when
the header says "EDF+"/"BDF+"; this reads the channel's bytes whatever the header says
(legacy files with an annotation channel exist), and gives onsets from the first
sample, as pyedflib does.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from .._errors import SourceFileError

__all__ = ["ANNOTATION_LABELS", "edf_start_offset", "parse_tals"]

#: The labels of EDF+/BDF+ annotation channels.
ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")


def _seconds(text: bytes, where: str) -> Decimal:
    try:
        return Decimal(text.decode("ascii"))
    except (UnicodeDecodeError, InvalidOperation):
        raise SourceFileError(f"{where}: {text[:40]!r} is not a TAL time") from None


def parse_tals(
    records: list[bytes], where: str
) -> tuple[Decimal, list[tuple[Decimal, Decimal | None, str]]]:
    """The file's sub-second start and its annotations, from each record's channel bytes.

    Returns ``(start, annotations)``: ``start`` is the first record's time-keeping onset
    (seconds after the header's start time, a `Decimal`, exact), and
    each annotation is ``(onset, duration, text)`` with ``onset`` counted from the first
    sample (the header's time plus ``start``). Raises ``ValueError`` naming ``where``.
    """
    start: Decimal | None = None
    out: list[tuple[Decimal, Decimal | None, str]] = []
    for record in records:
        keeping = True  # the first TAL of a record keeps time
        for tal in record.split(b"\x00"):
            if not tal.strip(b"\x00"):
                continue
            head, *texts = tal.split(b"\x14")
            onset_text, _, duration_text = head.partition(b"\x15")
            onset = _seconds(onset_text, where)
            duration = _seconds(duration_text, where) if duration_text else None
            texts = [t for t in texts if t]
            if keeping:
                keeping = False
                if start is None:
                    start = onset
                if not texts:
                    continue
            for text in texts:
                out.append((onset, duration, text.decode("utf-8", errors="replace")))
    if start is None:
        start = Decimal(0)
    return start, [(onset - start, duration, text) for onset, duration, text in out]


def edf_start_offset(path: str, where: str) -> Decimal:
    """The sub-second start of an EDF(+)/BDF(+) file: its first record's time-keeping
    onset, read from the file's bytes (0 where it has no annotation channel).

    For readers (MNE's) that keep only the header's whole seconds. Raises
    ``ValueError`` naming ``where`` for a header too short for what it declares.
    """
    with open(path, "rb") as f:
        head = f.read(256)
        try:
            n_signals = int(head[252:256].decode("ascii").strip())
        except ValueError:
            raise SourceFileError(f"{where}: its header's signal count is not a number") from None
        fields = f.read(256 * n_signals)
        if len(head) < 256 or len(fields) < 256 * n_signals:
            raise SourceFileError(
                f"{where}: the header is shorter than its {n_signals} signals need"
            )
        labels = [
            fields[16 * i : 16 * (i + 1)].decode("ascii", "replace").strip()
            for i in range(n_signals)
        ]
        where_counts = 216 * n_signals
        counts = [
            int(fields[where_counts + 8 * i : where_counts + 8 * (i + 1)].decode("ascii"))
            for i in range(n_signals)
        ]
        channel = next((i for i, label in enumerate(labels) if label in ANNOTATION_LABELS), None)
        if channel is None:
            return Decimal(0)
        width = 3 if head[:1] == b"\xff" else 2
        f.seek(256 * (n_signals + 1) + sum(counts[:channel]) * width)
        record = f.read(counts[channel] * width)
    return parse_tals([record], where)[0]
