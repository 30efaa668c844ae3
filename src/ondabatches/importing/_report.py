"""What an import reports: one [`FileReport`][ondabatches.importing.FileReport] per
file and the [`ImportReport`][ondabatches.importing.ImportReport] of the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FileReport", "ImportReport"]


@dataclass(frozen=True, slots=True)
class FileReport:
    """One imported file: its recording, its signals, and whether a resumed import skipped it."""

    source: str
    recording: str
    signals: tuple[str, ...]
    n_annotations: int
    n_bytes: int
    skipped: bool = False
    annotation_source: str | None = None

    def __post_init__(self) -> None:
        # A report read back from a done-marker's JSON holds a list: a tuple, so that
        # reports hash and compare the same whichever run made them.
        object.__setattr__(self, "signals", tuple(self.signals))

    def __str__(self) -> str:
        state = "kept from an earlier run" if self.skipped else "imported"
        extra = f" + {self.annotation_source}" if self.annotation_source else ""
        return (
            f"{self.source}{extra} -> recording {self.recording} ({state}): "
            f"{'; '.join(self.signals)}; {self.n_annotations} annotation(s)"
        )


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What [`import_dataset`][ondabatches.importing.import_dataset] wrote: the two
    tables and one [`FileReport`][ondabatches.importing.FileReport] per file."""

    signals: str
    annotations: str
    files: tuple[FileReport, ...] = field(default_factory=tuple)
    seconds: float = 0.0

    @property
    def n_imported(self) -> int:
        return sum(not f.skipped for f in self.files)

    def groupings(self) -> dict[tuple[str, ...], int]:
        """Each distinct channel grouping (its signals' descriptions) and how many files had it."""
        out: dict[tuple[str, ...], int] = {}
        for f in self.files:
            out[f.signals] = out.get(f.signals, 0) + 1
        return out

    def __str__(self) -> str:
        lines = [
            f"{len(self.files)} file(s) ({self.n_imported} imported, "
            f"{len(self.files) - self.n_imported} kept from an earlier run) "
            f"in {self.seconds:.1f} s",
            "channel groupings:",
        ]
        for signals, n in self.groupings().items():
            lines.append(f"  {n} file(s): {'; '.join(signals)}")
        lines.append(f"signals table:     {self.signals}")
        lines.append(f"annotations table: {self.annotations}")
        return "\n".join(lines)
