"""Many source files into ONE Onda dataset, in parallel, resumable, local or on any fsspec URL.

Layout of the output folder (a local path or a URL such as ``s3://bucket/night``)::

    <out>/<name>.onda.signal.arrow        one signals table for every file
    <out>/<name>.onda.annotation.arrow    one annotations table (column "value": the text)
    <out>/samples/<stem>_<sensor>.lpcm    sample files, named after each source file
    <out>/.import/manifest.json           the import's options (refuses another dataset)
    <out>/.import/parts/<key>.*           per file: its two tables and a "done" marker

Each file is converted by a worker process, its sample files streamed block by block
and written atomically; the file's part tables and then its marker follow, each
atomically, so a marker means "this file is complete". An interrupted import, run
again, skips the files whose marker matches the file as it is now, and the two dataset
tables are assembled from the parts at the end (also atomically). Recording and
annotation ids are UUIDv5 of the file's SHA-256, so importing twice gives equal tables.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import multiprocessing
import os
import posixpath
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from .._errors import (
    ArgumentError,
    DatasetExistsError,
    OndaBatchesError,
    SampleFileNotFoundError,
    SourceFileError,
)
from ..onda import annotations_table, current_settings, filesystem_for, signals_table, use_settings
from ..onda._storage import atomic_writer, is_local, storage_errors
from ._channels import ChannelMap
from ._convert import PAST_END_POLICIES, convert_source, recording_id
from ._discover import (
    _EDF_SUFFIXES,
    _MNE_FOLDER_SUFFIXES,
    _MNE_SUFFIXES,
    _join,
    _stem,
    _url,
    expand_inputs,
)
from ._report import FileReport, ImportReport
from ._sources import (
    _absolute,
    _local_copy,
    _open_source,
    _read_annotation_file,
    _sha256_of,
    companions,
)

__all__ = ["import_dataset"]

MANIFEST_VERSION = 1
_IMPORT_DIR = ".import"
# Names of atomic_writer's temporary files (left behind only by a killed process).
_STALE_TMP = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


# ----------------------------------------------------------------------------- one file


@dataclass(frozen=True, slots=True)
class _Task:
    """One file to convert (picklable: it crosses to a worker process)."""

    source: str
    annotation_source: str | None
    key: str
    stem: str
    out: str
    file_format: str
    channel_map: dict[str, list[str]]
    reader: str
    block_bytes: int
    annotations_past_end: str
    stages: dict[str, str | None] | None
    ukey: str
    in_place: bool = False


def _parts(task: _Task) -> tuple[str, str, str]:
    base = _join(task.out, _IMPORT_DIR, "parts", task.key)
    return f"{base}.signal.arrow", f"{base}.annotation.arrow", f"{base}.done.json"


def _write_bytes(url: str, data: bytes) -> None:
    fs, path = filesystem_for(url)
    with storage_errors(url, action="write"), atomic_writer(fs, path) as f:
        f.write(data)


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _read_table(url: str) -> pa.Table:
    fs, path = filesystem_for(url)
    with storage_errors(url):
        return pa.ipc.open_file(pa.py_buffer(fs.cat_file(path))).read_all()


def _convert_source_file(task: _Task, samples_dir: str) -> tuple[Any, ...]:
    """Convert ``task``'s source (and annotation) file: its digest, recording id, signals,
    annotations and channel summaries."""
    with _local_copy(task.source) as local:
        digest = _sha256_of(local)
        annotations = None
        annotation_digest = ""
        if task.annotation_source is not None:
            with _local_copy(task.annotation_source) as ann_local:
                annotation_digest = _sha256_of(ann_local)
                annotations = _read_annotation_file(ann_local, task.annotation_source)
        recording = recording_id(digest)
        source = _open_source(local, task.source, task.reader, ChannelMap(task.channel_map))
        try:
            signals, anns, summaries = convert_source(
                source,
                samples_dir,
                task.stem,
                recording,
                file_format=task.file_format,
                block_bytes=task.block_bytes,
                annotations=annotations,
                annotation_seed=f"{digest}:{annotation_digest}",
                annotations_past_end=task.annotations_past_end,
                stages=task.stages,
                source_file=task.source,
                annotations_from=task.annotation_source,
                in_place=(_absolute(task.source), local) if task.in_place else None,
            )
        finally:
            source.close()
    return digest, recording, signals, anns, summaries


def _convert_task(task: _Task) -> dict[str, Any]:
    """Convert one file and write its parts and marker; on failure remove what it wrote."""
    samples_dir = _join(task.out, "samples")
    written: list[str] = []
    try:
        digest, recording, signals, anns, summaries = _convert_source_file(task, samples_dir)
        if not task.in_place:
            written = [_join(samples_dir, p) for p in signals.column("file_path").to_pylist()]
            # file_path relative to the dataset tables, which live in task.out.
            paths = pa.array([f"samples/{p}" for p in signals.column("file_path").to_pylist()])
            signals = signals.set_column(
                signals.schema.get_field_index("file_path"), "file_path", paths
            )
        signal_part, annotation_part, marker = _parts(task)
        _write_bytes(signal_part, _table_bytes(signals))
        _write_bytes(annotation_part, _table_bytes(anns))
        report = FileReport(
            source=task.source,
            recording=str(recording),
            signals=tuple(str(s) for s in summaries),
            n_annotations=anns.num_rows,
            n_bytes=0,
            annotation_source=task.annotation_source,
        )
        done = {"ukey": task.ukey, "digest": digest, "report": asdict(report)}
        _write_bytes(marker, json.dumps(done, sort_keys=True).encode())
        return done
    except BaseException as exc:
        for url in written:
            with contextlib.suppress(Exception):
                fs, path = filesystem_for(url)
                fs.rm_file(path)
        if isinstance(exc, OndaBatchesError) or not isinstance(exc, (OSError, ValueError)):
            raise
        # pyedflib, MNE and numpy report a bad file as OSError/ValueError: name the file.
        raise SourceFileError(f"{task.source}: {type(exc).__name__}: {exc}") from exc


# ----------------------------------------------------------------------------- dataset


def _load_json(url: str) -> Any | None:
    fs, path = filesystem_for(url)
    with storage_errors(url):
        # Read, never ask exists() first: an object store's listing cache (s3fs) may
        # predate the marker that another process wrote since.
        try:
            data = fs.cat_file(path)
        except FileNotFoundError:
            return None
        return json.loads(data)


def _check_output(out: str, manifest: dict[str, Any], keys: set[str]) -> None:
    """Refuse an output folder holding another dataset; clear a killed run's temporary files."""
    fs, path = filesystem_for(out)
    with storage_errors(out):
        if not fs.exists(path):
            return
        existing = _load_json(_join(out, _IMPORT_DIR, "manifest.json"))
        tables = [p for p in fs.ls(path, detail=False) if p.endswith(".arrow")]
        if existing is None:
            if tables:
                raise DatasetExistsError(
                    f"{out} already holds Onda tables not written by an import "
                    f"({', '.join(posixpath.basename(t) for t in tables)}); choose another folder"
                )
            return
        if existing != manifest:
            diff = sorted(k for k in {*existing, *manifest} if existing.get(k) != manifest.get(k))
            sides = "; ".join(
                f"{k}: {existing.get(k)!r} there vs {manifest.get(k)!r} now" for k in diff
            )
            raise DatasetExistsError(
                f"{out} holds a dataset imported with other options ({sides}); "
                "choose another folder or delete it"
            )
        parts_dir = _join(out, _IMPORT_DIR, "parts")
        if fs.exists(filesystem_for(parts_dir)[1]):
            done = {
                posixpath.basename(p).split(".")[0]
                for p in fs.ls(filesystem_for(parts_dir)[1], detail=False)
                if p.endswith(".done.json")
            }
            others = sorted(done - keys)
            if others:
                raise DatasetExistsError(
                    f"{out} holds a dataset with {len(others)} file(s) that are not among the "
                    "inputs (or whose content changed); choose another folder, or give the "
                    "same inputs to resume"
                )
        if is_local(fs):
            for root, _, names in os.walk(path):
                for name in names:
                    if _STALE_TMP.match(name):
                        os.unlink(os.path.join(root, name))


def _pairs(inputs: Sequence[str], sleep_edf: bool) -> list[tuple[str, str | None]]:
    if not sleep_edf:
        return [(url, None) for url in inputs]
    from ._sleepedf import pair_sleep_edf

    return pair_sleep_edf(inputs)


def _key(source: str, annotation_source: str | None) -> str:
    return hashlib.sha256(f"{source}\n{annotation_source or ''}".encode()).hexdigest()[:24]


def _ukey(url: str) -> tuple[str, int]:
    fs, path = filesystem_for(url)
    with storage_errors(url):
        if fs.isdir(path):
            # A folder recording: the keys of its files, with their paths inside it.
            root = path.rstrip("/")
            keys, total = [], 0
            for p in sorted(fs.find(root)):
                key, size = _ukey(_url(fs, p, url))
                keys.append(f"{posixpath.relpath(p, root)}={key}")
                total += size
            return hashlib.sha256("\n".join(keys).encode()).hexdigest(), total
        if not fs.isfile(path):
            raise SampleFileNotFoundError(f"file to import not found: {url}")
        files = companions(fs, path)
        if len(files) > 1:  # a header and its side files: the keys of them all
            keys = {posixpath.basename(p): _file_ukey(fs, p) for p in files}
            joined = "\n".join(f"{name}={key}" for name, (key, _) in keys.items())
            return hashlib.sha256(joined.encode()).hexdigest(), sum(n for _, n in keys.values())
        return _file_ukey(fs, path)


def _file_ukey(fs: Any, path: str) -> tuple[str, int]:
    """One file's key: its version (or fsspec's ukey) and size."""
    info = fs.info(path)
    size = int(info.get("size") or fs.size(path))
    # An object's version where the store gives one: s3fs's ukey hashes the whole
    # info dict, whose fields differ between a HEAD and a cached listing, so that
    # the same object got another key on a rerun (and was imported again).
    version = next(
        (str(info[k]) for k in ("ETag", "etag", "VersionId", "generation", "md5Hash")
         if info.get(k)),
        None,
    )  # fmt: skip
    return (f"{version}:{size}" if version else str(fs.ukey(path))), size


def _assemble(out: str, name: str, tasks: list[_Task]) -> tuple[str, str]:
    signal_parts, annotation_parts = [], []
    for task in tasks:
        signal_part, annotation_part, _ = _parts(task)
        signal_parts.append(_read_table(signal_part))
        annotation_parts.append(_read_table(annotation_part))
    signals = signals_table(pa.concat_tables(signal_parts, promote_options="permissive"))
    annotations = annotations_table(
        pa.concat_tables(annotation_parts, promote_options="permissive")
    )
    signals_url = _join(out, f"{name}.onda.signal.arrow")
    annotations_url = _join(out, f"{name}.onda.annotation.arrow")
    _write_bytes(signals_url, _table_bytes(signals))
    _write_bytes(annotations_url, _table_bytes(annotations))
    return signals_url, annotations_url


def import_dataset(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    name: str = "dataset",
    file_format: str = "lpcm",
    channel_map: ChannelMap | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    sleep_edf: bool = False,
    reader: str = "auto",
    workers: int | None = None,
    progress: bool = False,
    annotations_past_end: str | None = None,
    block_bytes: int = 8 << 20,
    in_place: bool = False,
) -> ImportReport:
    """Import EDF/EDF+/BDF (and, with the ``mne`` extra, MNE-readable) files into ONE dataset.

    Parameters
    ----------
    inputs:
        Files, folders (searched recursively), glob patterns or ``@list.txt`` files,
        local or any fsspec URL (see [`expand_inputs`][ondabatches.importing.expand_inputs]).
    out:
        The dataset folder, local or a URL; see the module documentation for its layout.
        Rerunning with the same inputs and options resumes an interrupted import.
    name:
        Stem of the two tables: ``<out>/<name>.onda.signal.arrow`` and
        ``<out>/<name>.onda.annotation.arrow``.
    file_format:
        ``"lpcm"`` or ``"lpcm.zst"`` (or any registered format, written whole).
    channel_map:
        Label -> sensor type and channel name overrides (a dict, a
        [`ChannelMap`][ondabatches.importing.ChannelMap], or a JSON/CSV file), see
        [`ChannelMap`][ondabatches.importing.ChannelMap].
    sleep_edf:
        Pair ``*-PSG.edf`` recordings with their ``*-Hypnogram.edf`` (Sleep-EDF
        Expanded naming) and add a ``stage`` column (see
        [`SLEEP_EDF_STAGES`][ondabatches.importing.SLEEP_EDF_STAGES]).
    reader:
        ``"auto"`` (pyedflib for ``.edf``/``.bdf``, MNE for the rest), ``"edf"`` or ``"mne"``.
    workers:
        Worker processes (default: the CPU count, at most one per file); 1 converts in
        this process.
    progress:
        Show a progress bar (files/s, MB/s, ETA) on stderr.
    annotations_past_end:
        What to do with an annotation that ends past the end of its recording:
        ``"error"`` (the default, except ``"clip"`` for ``sleep_edf``, whose hypnograms
        end with a ``"Sleep stage ?"`` running past the recording), ``"clip"`` or ``"drop"``.
    block_bytes:
        Bytes of samples read and written at a time per signal: bounds the memory.
    in_place:
        Write the two tables only, no sample files: each signal reads its channels
        from the EDF/BDF file itself (``file_format`` ``"edf"``/``"bdf"``, ``file_path``
        the file's absolute path or URL with ``#signals=...``; see
        [`edf_signals`][ondabatches.importing.edf_signals]). Only EDF/EDF+/BDF files.

    Raises
    ------
    SourceFileError
        A file is unreadable, truncated, discontinuous (EDF+D), or has annotations
        before its start or past its end; the message names it. Files finished before
        are kept: fix or remove the file and run again to resume.
    DatasetExistsError
        ``out`` holds another dataset (other options, other files, or foreign tables).

    Examples
    --------
    >>> import tempfile, shutil, pyedflib.data
    >>> folder = tempfile.mkdtemp()
    >>> _ = shutil.copy(pyedflib.data.get_generator_filename(), folder)
    >>> report = import_dataset(folder, tempfile.mkdtemp(), workers=1)
    >>> len(report.files), report.files[0].signals[0]
    (1, 'misc (11 ch @ 200 Hz) [unrecognised labels grouped: squarewave, ramp, pulse, noise, ...]')
    """
    started = time.perf_counter()
    out = os.fspath(out)
    if "://" not in out:
        out = os.path.abspath(out)
    past_end, cmap, with_mne = _options(
        annotations_past_end, sleep_edf, channel_map, reader, in_place
    )
    pairs = _pairs(_input_files(inputs, out, with_mne), sleep_edf)
    manifest = {
        "version": MANIFEST_VERSION,
        "name": name,
        "file_format": file_format,
        "channel_map": cmap.to_dict(),
        "sleep_edf": sleep_edf,
        "annotations_past_end": past_end,
        "block_bytes": block_bytes,
    }
    if in_place:  # only then: the manifests of earlier imports stay equal
        manifest["in_place"] = True
    tasks, sizes = _tasks(pairs, out, manifest, reader)
    _check_output(out, manifest, {t.key for t in tasks})
    _write_bytes(
        _join(out, _IMPORT_DIR, "manifest.json"), json.dumps(manifest, sort_keys=True).encode()
    )
    reports: dict[str, FileReport] = {}
    todo = []
    for task, size in zip(tasks, sizes, strict=True):
        done = _load_json(_parts(task)[2])
        if done is not None and done.get("ukey") == task.ukey:
            reports[task.key] = FileReport(**{**done["report"], "n_bytes": size, "skipped": True})
        else:
            todo.append((task, size))
    _run(todo, reports, workers, progress)
    signals_url, annotations_url = _assemble(out, name, _distinct(tasks, reports))
    return ImportReport(
        signals_url,
        annotations_url,
        tuple(reports[t.key] for t in tasks),
        time.perf_counter() - started,
    )


def _options(
    annotations_past_end: str | None,
    sleep_edf: bool,
    channel_map: Any,
    reader: str,
    in_place: bool,
) -> tuple[str, ChannelMap, bool]:
    """`import_dataset`'s options checked: the past-end policy, the channel map, and
    whether MNE reads the files that pyedflib does not."""
    past_end = annotations_past_end or ("clip" if sleep_edf else "error")
    if past_end not in PAST_END_POLICIES:
        raise ArgumentError(
            f"annotations_past_end must be one of {PAST_END_POLICIES}, got {past_end!r}"
        )
    cmap = ChannelMap.from_value(channel_map)
    if reader not in ("auto", "edf", "mne"):
        raise ArgumentError(f"reader must be 'auto', 'edf' or 'mne', got {reader!r}")
    if in_place and reader == "mne":
        raise ArgumentError(
            "in_place serves EDF/BDF files read with reader 'edf' or 'auto', not 'mne'"
        )
    with_mne = not in_place and (reader == "mne" or (reader == "auto" and _has_mne()))
    return past_end, cmap, with_mne


def _input_files(inputs: Any, out: str, with_mne: bool) -> list[str]:
    """The files to import: ``inputs`` expanded, less any under the output folder (an
    output inside an input folder)."""
    suffixes = (*_EDF_SUFFIXES, *_MNE_SUFFIXES) if with_mne else _EDF_SUFFIXES
    folders = _MNE_FOLDER_SUFFIXES if with_mne else ()
    files = [
        f
        for f in expand_inputs(inputs, suffixes, folders)
        if not f.startswith(out.rstrip("/") + "/")
    ]
    if not files:
        looked = (
            *suffixes,
            *(f"{s} folders" for s in folders),
            *(["NIRx folders"] * bool(folders)),
        )
        raise SampleFileNotFoundError(f"no files to import in {inputs!r} (looked for {looked})")
    return files


def _tasks(
    pairs: list[tuple[str, str | None]], out: str, manifest: dict[str, Any], reader: str
) -> tuple[list[_Task], list[int]]:
    """One conversion task per (recording, annotation file) pair, and its bytes."""
    stages = None
    if manifest["sleep_edf"]:
        from ._sleepedf import SLEEP_EDF_STAGES

        stages = dict(SLEEP_EDF_STAGES)
    stems = [_stem(src) for src, _ in pairs]
    tasks, sizes = [], []
    for (src, ann), stem in zip(pairs, stems, strict=True):
        key = _key(src, ann)
        ukey, size = _ukey(src)
        if ann is not None:
            ann_ukey, ann_size = _ukey(ann)
            ukey, size = f"{ukey}+{ann_ukey}", size + ann_size
        if stems.count(stem) > 1:
            stem = f"{stem}-{key[:8]}"  # same file name in several folders
        tasks.append(
            _Task(
                src,
                ann,
                key,
                stem,
                out,
                manifest["file_format"],
                manifest["channel_map"],
                reader,
                manifest["block_bytes"],
                manifest["annotations_past_end"],
                stages,
                ukey,
                bool(manifest.get("in_place")),
            )
        )
        sizes.append(size)
    return tasks, sizes


def _distinct(tasks: list[_Task], reports: dict[str, FileReport]) -> list[_Task]:
    """``tasks`` less the files whose content an earlier one has: two files with the
    same bytes are one recording (ids come from the content), kept once, and each later
    copy is named in a warning."""
    first_of: dict[str, str] = {}
    kept = []
    for task in tasks:
        recording = reports[task.key].recording
        if recording in first_of:
            warnings.warn(
                f"{task.source} has the same content as {first_of[recording]} (recording "
                f"{recording}): the dataset holds it once",
                stacklevel=3,
            )
            continue
        first_of[recording] = task.source
        kept.append(task)
    return kept


def _has_mne() -> bool:
    try:
        import mne  # noqa: F401
    except ImportError:
        return False
    return True


def _run(
    todo: list[tuple[_Task, int]],
    reports: dict[str, FileReport],
    workers: int | None,
    progress: bool,
) -> None:
    from tqdm.auto import tqdm

    n_workers = min(workers or os.cpu_count() or 1, len(todo))
    total = sum(size for _, size in todo)
    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="import",
        disable=not progress or not todo,
        dynamic_ncols=True,
    )
    started = time.perf_counter()

    def finished(task: _Task, size: int, done: dict[str, Any]) -> None:
        reports[task.key] = FileReport(**{**done["report"], "n_bytes": size})
        bar.update(size)
        n = len([r for r in reports.values() if not r.skipped])
        rate = n / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix_str(f"{n}/{len(todo)} files, {rate:.2f} files/s", refresh=False)

    try:
        if n_workers <= 1:
            for task, size in todo:
                finished(task, size, _convert_task(task))
            return
        ctx = multiprocessing.get_context("spawn")
        # Spawned workers read nothing from this process: they get its settings
        # (storage options, allow-list, cache) as they start.
        with cf.ProcessPoolExecutor(
            n_workers, mp_context=ctx, initializer=use_settings, initargs=(current_settings(),)
        ) as pool:
            futures = {pool.submit(_convert_task, task): (task, size) for task, size in todo}
            try:
                for future in cf.as_completed(futures):
                    task, size = futures[future]
                    finished(task, size, future.result())
            except BaseException:
                # Files being converted finish (or clean up) on their own; queued ones never start.
                for future in futures:
                    future.cancel()
                raise
    finally:
        bar.close()
