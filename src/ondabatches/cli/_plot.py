"""``ondabatches plot``: draw a batch item, or a dataset's label distribution, to PNG."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from .._errors import ArgumentError, SampleFileNotFoundError

__all__ = ["add_parser", "run"]

NS_PER_S = 1_000_000_000
DEFAULT_EPOCHS = 4


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw a random batch item (traces + hypnogram) or a label overview to PNG "
        "(needs the 'plot' extra)",
        description=(
            "Draw one batch item of a labeled Onda dataset: the channels' traces over the "
            "window, with the label sequence as a hypnogram strip beneath. The item is "
            "item INDEX of the RandomBatches stream seeded by SEED over the signals and "
            "annotations tables found at PATH (folders or table files), labeled with the "
            "annotations' label column (stage, or the first text column). With --events, "
            "the window's events of a stored event label set are shaded over the traces "
            "and drawn in a strip beneath the hypnogram. With --transforms, the item is drawn "
            "raw, transformed and as a spectrogram (with --modalities: each modality raw, then "
            "as its item transforms leave it). With --overview, draw the label "
            "distribution per recording instead."
        ),
        epilog="example: ondabatches plot DATASET_DIR --seed 0 --events DATASET_DIR/arousals "
        "--out item.png",
    )
    _add_item_arguments(parser)
    _add_drawing_arguments(parser)
    parser.set_defaults(func=run)


def _add_item_arguments(parser: argparse.ArgumentParser) -> None:
    """Which item (or overview) of which dataset, and where the picture goes."""
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="folder(s) or table file(s) of the dataset"
    )
    parser.add_argument(
        "--out", "-o", default=None, help="PNG file (default: item.png or overview.png)"
    )
    parser.add_argument(
        "--overview", action="store_true", help="draw the label distribution per recording"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch stream (default 0)")
    parser.add_argument(
        "--index", type=int, default=0, help="which item of the seeded stream (default 0)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"window length, a whole number of epochs (default: {DEFAULT_EPOCHS} epochs, "
        "or fewer if a recording's labels are shorter)",
    )
    parser.add_argument(
        "--epoch", type=float, default=30.0, metavar="SECONDS", help="label epoch (default 30)"
    )
    parser.add_argument(
        "--channels",
        type=int,
        default=None,
        metavar="N",
        help="draw N random channels (default all)",
    )
    parser.add_argument(
        "--sensor", metavar="TYPE", help="only signals of this sensor type (e.g. eeg)"
    )


def _add_drawing_arguments(parser: argparse.ArgumentParser) -> None:
    """What is drawn with the item: other modalities, events, transforms, and how."""
    parser.add_argument(
        "--modalities",
        metavar="TYPES",
        help="draw these sensor types of the item's recording (comma-separated, e.g. "
        "eeg,eog,ecg), each at its own rate, stacked on one time axis over the hypnogram; "
        "the item is drawn from the first type's signals",
    )
    parser.add_argument(
        "--events",
        action="append",
        default=[],
        metavar="PATH",
        help="an event label set written by label_events (its folder or its events.json), "
        "drawn over the item's window; repeat for several sets",
    )
    parser.add_argument(
        "--transforms",
        metavar="JSON_OR_FILE",
        help='a transform pipeline, as JSON (a list of {"name": ..., params}) or a file '
        "holding it: the item is drawn raw, transformed (filters read with their context) "
        "and, where the pipeline has a spectrogram, as one; with --modalities, each "
        "modality raw and then as the item transforms that apply to it leave it (a "
        'transform\'s "modalities" names them; batch transforms such as a spectrogram '
        "are for one signal: --sensor); e.g. "
        '\'[{"name": "bandpass", "low_hz": 0.3, "high_hz": 35}, '
        '{"name": "spectrogram", "window_s": 2, "hop_s": 0.5}]\'',
    )
    parser.add_argument("--label-column", metavar="NAME", help="annotation column of the labels")
    parser.add_argument("--reroot", metavar="DIR", help="find sample files by base name in DIR")
    parser.add_argument(
        "--size",
        nargs=2,
        type=int,
        default=None,
        metavar=("WIDTH", "HEIGHT"),
        help="image size in pixels (default 1200 700 for an item)",
    )


def _load_tables(paths: list[str], reroot: Any) -> tuple[Any, Any]:
    import pyarrow as pa

    from ..inspection import find_tables, in_folder
    from ..onda import read_annotations, read_signals

    if reroot is not None:
        reroot = in_folder(reroot)
    signals, annotations = [], []
    for path in paths:
        sig_paths, ann_paths = find_tables(path)
        signals += [read_signals(p, reroot=reroot) for p in sig_paths]
        annotations += [read_annotations(p) for p in ann_paths]
    if not annotations:
        raise SampleFileNotFoundError(f"no Onda annotations table found in {', '.join(paths)}")

    def concat(tables: list[Any]) -> Any:
        if not tables:
            return None
        return (
            tables[0]
            if len(tables) == 1
            else pa.concat_tables(tables, promote_options="permissive")
        )

    return concat(signals), concat(annotations)


def _load_events(paths: list[str]) -> dict[str, Any]:
    """The event label sets at ``paths`` (folders or manifests), by their folders' names."""
    from .._errors import SampleFileNotFoundError
    from ..labels import load_event_labels

    found: dict[str, Any] = {}
    for path in paths:
        manifest = path if path.endswith(".json") else f"{path.rstrip('/')}/events.json"
        try:
            events = load_event_labels(manifest)
        except SampleFileNotFoundError as exc:
            raise SampleFileNotFoundError(
                f"--events {path}: no event label set there (no {manifest})"
            ) from exc
        parts = manifest.rstrip("/").split("/")
        name = parts[-2] if len(parts) > 1 else "events"
        # Two sets in folders of one name: the later ones numbered.
        found[name if name not in found else f"{name} ({len(found) + 1})"] = events
    return found


def _load_transforms(text: str | None) -> Any:
    """The pipeline of ``--transforms`` (JSON, or a file of it); None without it."""
    import json
    import os

    from ..transforms import Pipeline

    if text is None:
        return None
    source = "--transforms"
    if not text.lstrip().startswith(("[", "{")):
        if not os.path.isfile(text):
            raise SampleFileNotFoundError(
                f"--transforms {text!r}: neither JSON (a list of transforms) nor a file"
            )
        source = f"--transforms {text}"
        with open(text, encoding="utf-8") as f:
            text = f.read()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArgumentError(f"{source}: not JSON ({exc})") from None
    if isinstance(config, dict):
        config = [config]
    if not isinstance(config, list) or not all(isinstance(t, dict) for t in config):
        raise ArgumentError(
            f'{source}: a list of transforms ({{"name": ..., parameters}}) is expected, '
            f"got {config!r}"
        )
    return Pipeline(config)


def _plot_item(args: argparse.Namespace, signals: Any, annotations: Any, out: str) -> str:
    import pyarrow.compute as pc

    from ..plot import plot_batch_item

    if signals is None:
        raise SampleFileNotFoundError(f"no Onda signals table found in {', '.join(args.paths)}")
    events = _load_events(args.events)
    transforms = _load_transforms(args.transforms)
    every_signal = signals
    modalities = _modalities(args, signals)
    if modalities and transforms is not None and transforms.batch:
        raise ArgumentError(
            f"--transforms with --modalities draws each modality's item transforms; "
            f"{', '.join(repr(t) for _, t in transforms.batch)} run(s) on a batch (a "
            f"spectrogram is drawn for one signal: give --sensor TYPE rather than "
            f"--modalities)"
        )
    if modalities:
        args.sensor = modalities[0]
    if args.sensor is not None:
        signals = signals.filter(pc.equal(signals.column("sensor_type"), args.sensor))
        if signals.num_rows == 0:
            raise ArgumentError(f"no signals of sensor type {args.sensor!r}")
    item, encoding = _drawn_item(args, signals, annotations)
    start, stop = item.window.start / NS_PER_S, item.window.stop / NS_PER_S
    title = (
        f"recording {item.recording} · {item.info.sensor_type} · {start:g}-{stop:g} s "
        f"(seed {args.seed}, item {args.index})"
    )
    label_names = {code: name for name, code in encoding.items()}
    counts = "".join(_events_said(name, ev, item) for name, ev in events.items())
    if modalities:
        title = title.replace(f" · {item.info.sensor_type} · ", f" · {', '.join(modalities)} · ")
        if transforms is not None:
            title += f" · {' + '.join(t.name for t in transforms.transforms)}"
        absent = _plot_modalities(
            item, modalities, every_signal, label_names, title, out, args, events, transforms
        )
        if absent:
            title += f" (not in this recording's window: {', '.join(absent)})"
        return f"item {args.index} of seed {args.seed}: {title}{counts}"
    if transforms is not None:
        title += f" · {' + '.join(t.name for t in transforms.transforms)}"
        # Each stage has its panel: a taller picture unless a size is given.
        default = (1200, 900 + 120 * len(item.channels or item.info.channels))
    else:
        default = (1200, 700)
    plot_batch_item(
        item,
        label_names=label_names,
        path=out,
        title=title,
        events=events,
        transforms=transforms,
        key=(args.seed, args.index),
        size=tuple(args.size) if args.size else default,
    )
    return f"item {args.index} of seed {args.seed}: {title}{counts}"


def _drawn_item(args: argparse.Namespace, signals: Any, annotations: Any) -> tuple[Any, Any]:
    """Item ``--index`` of the RandomBatches stream seeded by ``--seed`` over the signals
    labeled with the annotations' label column, and the labels' encoding."""
    from ..batches import RandomBatches
    from ..inspection import label_column
    from ..labels import iter_labeled_signals, label_signals, sort_and_trim_spans
    from ..plot import label_encoding

    column = args.label_column or label_column(annotations)
    if column is None or column not in annotations.column_names:
        raise ArgumentError(
            f"no label column {column or '(stage or a text column)'} in the annotations; "
            f"columns are {annotations.column_names}"
        )
    epoch = round(args.epoch * NS_PER_S)
    encoding = label_encoding(str(v) for v in annotations.column(column).to_pylist())
    trimmed = sort_and_trim_spans(annotations, epoch=epoch, by="recording")
    labeled = label_signals(signals, trimmed, labels_column=column, epoch=epoch, encoding=encoding)
    if args.duration is None:
        shortest = min(row.n_labels for row in iter_labeled_signals(labeled))
        duration = min(DEFAULT_EPOCHS, shortest) * epoch
    else:
        duration = round(args.duration * NS_PER_S)
    batches = RandomBatches(
        labeled, n_channels=args.channels, batch_size=1, batch_duration=duration
    )
    item = batches.draw(args.seed, args.index, 1)[0]
    return item, encoding


def _events_said(name: str, events: Any, item: Any) -> str:
    """``; NAME: N event(s) in the window`` (or that the recording lacks the set)."""
    if not events.has(item.recording):
        return f"; {name}: none (recording {item.recording} is not in this label set)"
    onsets, _, _ = events.window(item.recording, item.window.start, item.window.stop)
    return f"; {name}: {len(onsets)} event(s) in the window"


def _modalities(args: argparse.Namespace, signals: Any) -> list[str]:
    """The sensor types of --modalities, checked against the signals table."""
    if args.modalities is None:
        return []
    if args.sensor is not None:
        raise ArgumentError("give --sensor or --modalities, not both")
    types = [t.strip() for t in args.modalities.split(",") if t.strip()]
    known = set(signals.column("sensor_type").to_pylist())
    unknown = [t for t in types if t not in known]
    if not types or unknown:
        raise ArgumentError(
            f"--modalities {args.modalities!r}: no signals of sensor type(s) {unknown}; "
            f"the signals' types are {sorted(known)}"
        )
    return types


def _plot_modalities(
    item: Any,
    modalities: list[str],
    signals: Any,
    label_names: dict[int, str],
    title: str,
    out: str,
    args: argparse.Namespace,
    events: dict[str, Any],
    transforms: Any = None,
) -> list[str]:
    """Draw the window of ``item`` in each modality's signal of its recording (with
    ``transforms``, each modality raw and then transformed beneath it); the modalities
    that the recording lacks over that window."""
    import numpy as np

    from ..materialize import materialize_batch_item
    from ..onda import iter_signals, load
    from ..plot import plot_modalities
    from ..plot._draw import _window_events

    _, y = materialize_batch_item(item)
    window = item.window
    x, rates, channels, units, absent = {}, {}, {}, {}, []
    found_signals: dict[str, Any] = {}
    for sensor_type in modalities:
        found = [
            s for s in iter_signals(signals)
            if s.recording == item.recording and s.info.sensor_type == sensor_type
            and s.span.start <= window.start and window.stop <= s.span.stop
        ]  # fmt: skip
        if not found:
            absent.append(sensor_type)
            continue
        signal = found[0]  # the first signal of that type covering the window
        # The window relative to the signal's first sample, as load() takes it.
        span = window.translate(-signal.span.start)
        x[sensor_type] = load(signal, span, dtype=np.float64).data
        rates[sensor_type] = signal.sample_rate
        channels[sensor_type] = list(signal.channels)
        units[sensor_type] = signal.info.sample_unit
        found_signals[sensor_type] = signal
    if transforms is not None and found_signals:
        x, rates, channels, units = _transformed_modalities(
            item, found_signals, transforms, (args.seed, args.index), x, rates, channels, units
        )
    drawn, classes = _window_events(events, item.recording, window)
    plot_modalities(
        x,
        y,
        sample_rates=rates,
        label_rate=1e9 * y.shape[-1] / window.duration,
        label_names=label_names,
        channels=channels,
        units=units,
        title=title,
        events=drawn,
        event_classes=classes,
        path=out,
        size=tuple(args.size) if args.size else (1200, 800),
    )
    return absent


def run(args: argparse.Namespace) -> int:
    from .._errors import require

    require("matplotlib", "plot")
    # A local path or a URL (s3://...): plot.save_png writes either.
    out = args.out or ("overview.png" if args.overview else "item.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signals, annotations = _load_tables(args.paths, args.reroot)
        if args.overview:
            from ..plot import plot_overview

            plot_overview(
                annotations,
                out,
                column=args.label_column,
                size=tuple(args.size) if args.size else None,
            )
            n_recordings = len(set(annotations.column("recording").to_pylist()))
            what = f"label distribution of {n_recordings} recording(s)"
        else:
            what = _plot_item(args, signals, annotations, out)
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    print(f"wrote {out}: {what}")
    return 0


def _transformed_modalities(
    item: Any,
    signals: dict[str, Any],
    pipeline: Any,
    key: tuple[int, int],
    x: dict[str, Any],
    rates: dict[str, float],
    channels: dict[str, list[str]],
    units: dict[str, str],
) -> tuple[dict[str, Any], ...]:
    """The drawing's modalities with, after each one that an item transform applies
    to, its window as a batch of the montage of ``signals`` (sensor type -> signal)
    gives it: read with its filters' context, its transforms at its own rate, the
    draws of item 0 of batch ``key`` shared by all modalities."""
    import numpy as np

    from ..batches import MultiBatchItem
    from ..batches._multi_item import signal_part
    from ..materialize import materialize_batch

    names = tuple(signals)
    parts = tuple(
        signal_part(s.recording, s.file_path, s.file_format, s.span, s.info, item.window,
                    None, False)
        for s in signals.values()
    )  # fmt: skip
    montage = MultiBatchItem(item.recording, item.window, names, parts, item.label_codes())
    xt, _ = materialize_batch([montage], np.float64, transforms=pipeline, key=key)
    out: tuple[dict[str, Any], ...] = ({}, {}, {}, {})
    for name in x:
        steps = [t.name for _, t in pipeline.item if t.applies_to(name)]
        for label, values in ((name, x[name]), (f"{name} · {' + '.join(steps)}", None)):
            if values is None:
                if not steps:
                    continue
                values = xt[name][0]
            out[0][label], out[1][label] = values, rates[name]
            out[2][label], out[3][label] = channels[name], units[name]
    return out
