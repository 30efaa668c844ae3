"""Channel names and grouping: EDF labels to Onda sensor types, channels and signals.

Every channel gets a sensor type and a channel name, from the user's
[`ChannelMap`][ondabatches.importing.ChannelMap] when it names the label, else guessed:
a label opening with a sensor word (``"EEG Fpz-Cz"``), a transducer naming one (``"EEG
electrode"``), or a 10-20 electrode name (``"C3-M2"``). A label none of these recognise
gets the generic sensor type
[`GENERIC_SENSOR_TYPE`][ondabatches.importing.GENERIC_SENSOR_TYPE], so that ``ch0`` ...
``ch18`` recorded alike become *one* signal of 19 channels rather than 19 one-channel
signals.

Channels then share an Onda signal when their sensor type, sample rate, unit, encoding
(resolution, offset, sample type) and length agree
([`group_channels`][ondabatches.importing.group_channels]), and each signal is named
([`signal_names`][ondabatches.importing.signal_names]): by its sensor type, or, for
generic channels, by their type in the file or the common opening of their labels
(``DC01``, ``DC02``: ``dc``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import SchemaError

__all__ = [
    "GENERIC_SENSOR_TYPE",
    "ChannelMap",
    "SourceChannel",
    "group_channels",
    "label_prefix",
    "sensor_type_and_channel",
    "signal_names",
]

#: The sensor type of channels whose labels name no known sensor (MNE calls them "misc").
GENERIC_SENSOR_TYPE = "misc"

# The sensor-type words that open EDF labels in practice ("EEG Fpz-Cz", "EMG submental").
_SENSOR_WORDS = {
    "eeg": "eeg",
    "eog": "eog",
    "emg": "emg",
    "ecg": "ecg",
    "ekg": "ecg",
    "resp": "resp",
    "spo2": "spo2",
    "sao2": "spo2",
    "temp": "temp",
    "pos": "position",
    "position": "position",
    "event": "event",
    "marker": "event",
    "pleth": "pleth",
    "snore": "snore",
}

# 10-20 (and 10-10) electrode names, alone or as a derivation: "C3", "Fpz-Cz", "C4-M1".
_ELECTRODE = r"(?:fp|af|f|ft|fc|c|t|tp|cp|p|po|o|a|m|i)(?:[0-9]{1,2}|z)"
_EEG_LABEL = re.compile(rf"^{_ELECTRODE}(?:\s*-\s*{_ELECTRODE})?$", re.IGNORECASE)

# Physical dimensions (EDF's 8 ASCII characters, MNE's units) to Onda's spelled-out units.
_UNITS = {
    "uv": "microvolt",
    "µv": "microvolt",
    "mv": "millivolt",
    "v": "volt",
    "nv": "nanovolt",
    "%": "percent",
    "degc": "degrees_celsius",
    "°c": "degrees_celsius",
    "bpm": "beats_per_minute",
    "hz": "hertz",
    "mmhg": "millimeter_of_mercury",
    "s": "second",
    "ms": "millisecond",
}


def _snake(text: str) -> str:
    """Lowercase, with every run of characters outside ``[a-z0-9]`` made one ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _channel_name(text: str) -> str:
    """An Onda channel name: lowercase; ``-`` and ``.`` kept (``fpz-cz``), other runs ``_``."""
    return re.sub(r"[^a-z0-9.\-]+", "_", text.strip().lower()).strip("_")


def onda_unit(dimension: str) -> str:
    """Onda's spelled-out unit of a physical dimension (``"uV"`` -> ``"microvolt"``)."""
    key = dimension.strip().lower()
    return _UNITS.get(key) or _snake(key) or "unknown"


def sensor_type_and_channel(label: str, transducer: str = "") -> tuple[str, str]:
    """The Onda sensor type and channel name guessed from a channel label.

    A label opening with a sensor word (``EEG``, ``EOG``, ``EMG``, ``ECG``/``EKG``,
    ``Resp``, ``SpO2``, ...) gives that type and the rest as the channel; a label that
    is only such a word names both; otherwise a transducer naming a sensor
    (``"EEG electrode"``) or a 10-20 electrode label (``"C3-M2"``) gives the type, and
    last the generic [`GENERIC_SENSOR_TYPE`][ondabatches.importing.GENERIC_SENSOR_TYPE],
    with the sanitized label as channel.

    Examples
    --------
    >>> sensor_type_and_channel("EEG Fpz-Cz")
    ('eeg', 'fpz-cz')
    >>> sensor_type_and_channel("EKG")
    ('ecg', 'ecg')
    >>> sensor_type_and_channel("C3-M2")
    ('eeg', 'c3-m2')
    >>> sensor_type_and_channel("sine 8.5 Hz")
    ('misc', 'sine_8.5_hz')
    """
    words = label.strip().split(maxsplit=1)
    channel = _channel_name(label) or "channel"
    if words:
        head = _snake(words[0])
        if head in _SENSOR_WORDS:
            rest = _channel_name(words[1]) if len(words) > 1 else ""
            return _SENSOR_WORDS[head], rest or _SENSOR_WORDS[head]
    for word in re.split(r"[^A-Za-z0-9]+", transducer):
        if word.lower() in _SENSOR_WORDS:
            return _SENSOR_WORDS[word.lower()], channel
    if _EEG_LABEL.match(label.strip()):
        return "eeg", channel
    return GENERIC_SENSOR_TYPE, channel


#: The sensor words that a label can open with, glued to a number or a reference
#: ("EOG1", "EKG-Ref", "EMG_chin"), for labels of readers that call every channel EEG.
_NOT_EEG_LABEL = re.compile(r"^(eog|emg|ecg|ekg|resp|spo2|sao2|pleth|snore)(?![a-z])", re.I)


def _label_sensor_type(label: str) -> str | None:
    """The sensor type that a label opening with a non-EEG sensor word names, else None.

    Readers that keep no channel types (EEGLAB, Persyst) give every channel as EEG: a
    label such as ``"ECG"``, ``"EOG1"`` or ``"EKG-Ref"`` says better.

    Examples
    --------
    >>> _label_sensor_type("EOG1"), _label_sensor_type("EKG-Ref"), _label_sensor_type("Fp1")
    ('eog', 'ecg', None)
    >>> _label_sensor_type("Respiration") is None  # a word, not a sensor prefix
    True
    """
    match = _NOT_EEG_LABEL.match(label.strip())
    return None if match is None else _SENSOR_WORDS[match.group(1).lower()]


@dataclass(frozen=True, slots=True)
class ChannelMap:
    """The user's names for channel labels: ``label -> (sensor type, channel name)``.

    Overrides the guesses of
    [`sensor_type_and_channel`][ondabatches.importing.sensor_type_and_channel]. Labels
    match exactly (surrounding blanks ignored), then case-insensitively.

    Build one from a dict (values ``"eeg"``, ``("eeg", "c3")`` or
    ``{"sensor_type": "eeg", "channel": "c3"}``) or
    [`from_file`][ondabatches.importing.ChannelMap.from_file] (the same as JSON, or a
    CSV with columns ``label,sensor_type[,channel]``).

    Examples
    --------
    >>> cmap = ChannelMap.from_value({"ch0": ("eeg", "c3"), "ch1": "eeg"})
    >>> cmap.lookup("CH0"), cmap.lookup("ch1"), cmap.lookup("ch2")
    (('eeg', 'c3'), ('eeg', 'ch1'), None)
    """

    entries: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean: dict[str, tuple[str, str]] = {}
        for label, value in dict(self.entries).items():
            clean[str(label).strip()] = _map_value(str(label), value)
        object.__setattr__(self, "entries", clean)

    @classmethod
    def from_value(cls, value: ChannelMap | Mapping[str, Any] | str | os.PathLike | None):
        """A map from a [`ChannelMap`][ondabatches.importing.ChannelMap], a dict, a
        JSON/CSV file, or ``None`` (empty)."""
        if value is None:
            return cls()
        if isinstance(value, ChannelMap):
            return value
        if isinstance(value, Mapping):
            return cls(value)
        return cls.from_file(value)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ChannelMap:
        """Read a JSON object or a CSV file (``label,sensor_type[,channel]``), local or URL."""
        from ..onda import filesystem_for

        url = os.fspath(path)
        fs, fs_path = filesystem_for(url)
        try:
            with fs.open(fs_path, "rb") as f:
                text = f.read().decode("utf-8-sig")
        except FileNotFoundError:
            from .._errors import SampleFileNotFoundError

            raise SampleFileNotFoundError(f"channel map not found: {url}") from None
        if url.lower().endswith(".csv"):
            rows = list(csv.DictReader(io.StringIO(text)))
            if not rows or not {"label", "sensor_type"} <= set(rows[0]):
                raise SchemaError(
                    f"channel map {url}: a CSV needs columns label,sensor_type[,channel]; "
                    f"found {list(rows[0]) if rows else 'no rows'}"
                )
            entries = {
                r["label"]: (r["sensor_type"], r.get("channel") or _channel_name(r["label"]))
                for r in rows
            }
            return cls(entries)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"channel map {url} is neither CSV nor valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SchemaError(
                f"channel map {url}: expected a JSON object, got {type(data).__name__}"
            )
        try:
            return cls(data)
        except SchemaError as exc:
            raise SchemaError(f"channel map {url}: {exc}") from None

    def lookup(self, label: str) -> tuple[str, str] | None:
        """``(sensor_type, channel)`` for ``label``, or ``None`` where the map is silent."""
        key = label.strip()
        if key in self.entries:
            return self.entries[key]
        folded = {k.lower(): v for k, v in self.entries.items()}
        return folded.get(key.lower())

    def to_dict(self) -> dict[str, list[str]]:
        """Plain JSON: ``{label: [sensor_type, channel]}``."""
        return {k: list(v) for k, v in sorted(self.entries.items())}


def _map_value(label: str, value: Any) -> tuple[str, str]:
    if isinstance(value, str):
        sensor, channel = value, _channel_name(label)
    elif isinstance(value, Mapping) and "sensor_type" in value:
        sensor = value["sensor_type"]
        channel = value.get("channel") or _channel_name(label)
    elif isinstance(value, Sequence) and len(value) == 2:
        sensor, channel = value
    else:
        raise SchemaError(
            f"channel map entry {label!r}: expected a sensor type, a (sensor_type, channel) "
            f"pair or a {{'sensor_type', 'channel'}} object, got {value!r}"
        )
    sensor_clean, channel_clean = _snake(str(sensor)), _channel_name(str(channel))
    if not sensor_clean or not channel_clean:
        raise SchemaError(f"channel map entry {label!r}: empty sensor type or channel in {value!r}")
    return sensor_clean, channel_clean


@dataclass(frozen=True, slots=True)
class SourceChannel:
    """One channel of a source file as it will be stored in Onda.

    ``index`` is the reader's channel number; ``resolution`` and ``offset`` are the
    exact encoding of its stored values of ``sample_type``; ``n_samples`` counts them.
    ``guessed`` says the sensor type is the generic one (no name recognised it);
    ``kind`` is the file's own channel type where the reader gives one (MNE's ``eeg``,
    ``stim``, ``bio``, ...), ``""`` otherwise.
    """

    index: int
    label: str
    sensor_type: str
    channel: str
    unit: str
    sample_rate: float
    resolution: float
    offset: float
    sample_type: str
    n_samples: int
    guessed: bool = False
    kind: str = ""

    @property
    def group_key(self) -> tuple[Any, ...]:
        """Channels with equal keys can share one Onda signal."""
        return (
            self.sensor_type,
            self.sample_rate,
            self.unit,
            self.resolution,
            self.offset,
            self.sample_type,
            self.n_samples,
        )


def name_channel(
    label: str, transducer: str, channel_map: ChannelMap | None
) -> tuple[str, str, bool]:
    """``(sensor_type, channel, guessed)`` of a label: the map's names, else the guess."""
    mapped = channel_map.lookup(label) if channel_map is not None else None
    if mapped is not None:
        return mapped[0], mapped[1], False
    sensor, channel = sensor_type_and_channel(label, transducer)
    return sensor, channel, sensor == GENERIC_SENSOR_TYPE


def unique_names(names: Iterable[str]) -> list[str]:
    """``names`` with repeats suffixed ``_2``, ``_3``, ... (Onda names must be unique)."""
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in out:
            n += 1
            candidate = f"{name}_{n}"
        out.append(candidate)
    return out


def label_prefix(labels: Sequence[str]) -> str:
    """The labels' common opening words, snake case, or ``""`` (under two letters).

    The common prefix is cut back to its leading letters and the words that follow
    (digits, a trailing separator and a partial word go), so ``"DC01"``, ``"DC02"``
    give ``"dc"`` and ``"Light L"``, ``"Light R"`` give ``"light"``.

    Examples
    --------
    >>> label_prefix(["DC01", "DC02", "DC13"]), label_prefix(["Light L", "Light R"])
    ('dc', 'light')
    >>> label_prefix(["aux0"]), label_prefix(["squarewave", "ramp"]), label_prefix(["x1", "x2"])
    ('aux', '', '')
    >>> label_prefix(["Pulse rate", "Pulse rats"]), label_prefix(["LightL", "LightR"])
    ('pulse', 'light')
    """
    if not labels:
        return ""
    stripped = [label.strip() for label in labels]
    common = os.path.commonprefix(stripped)
    after = {label[len(common) : len(common) + 1] for label in stripped}
    if common[-1:].isalpha() and any(
        c.isalpha() and not (c.isupper() and common[-1].islower()) for c in after
    ):
        # A word cut in the middle ("Pulse rat" of "rate"/"rats") is no word: drop it
        # (a capital after a lowercase letter opens a word: "LightL", "LightR").
        common = re.sub(r"[A-Za-z]+$", "", common)
    match = re.match(r"[A-Za-z]+(?:[ _.\-]+[A-Za-z]+)*", common)
    name = _snake(match.group(0)) if match else ""
    return name if len(name.replace("_", "")) >= 2 else ""


def signal_names(groups: Sequence[Sequence[SourceChannel]]) -> list[str]:
    """Onda signal names (``sensor_label``) of channel groups, unique and snake case.

    A group's name is its sensor type, except for a group of the generic type
    [`GENERIC_SENSOR_TYPE`][ondabatches.importing.GENERIC_SENSOR_TYPE] that no channel
    map named: it is named by its channels' own type in the file
    ([`SourceChannel.kind`][ondabatches.importing.SourceChannel.kind], where they share
    one that is not generic), else by its labels' common opening word
    ([`label_prefix`][ondabatches.importing.label_prefix]: ``"DC01"``, ``"DC02"`` give
    ``"dc"``), and only else ``misc``. Repeats get ``_2``, ``_3``, ...

    Examples
    --------
    >>> def ch(label, sensor="misc", rate=256.0, kind="", guessed=True):
    ...     return SourceChannel(0, label, sensor, label.lower(), "unknown", rate, 1.0, 0.0,
    ...                          "int16", 100, guessed, kind)
    >>> signal_names([[ch("C3", "eeg", guessed=False)], [ch("DC01"), ch("DC02")],
    ...               [ch("DC03", rate=1.0)], [ch("squarewave"), ch("ramp")],
    ...               [ch("x", kind="stim")], [ch("y", rate=8.0)]])
    ['eeg', 'dc', 'dc_2', 'misc', 'stim', 'misc_2']
    """
    names = []
    for group in groups:
        name = group[0].sensor_type
        if name == GENERIC_SENSOR_TYPE and all(ch.guessed for ch in group):
            kinds = {_snake(ch.kind) for ch in group}
            kind = kinds.pop() if len(kinds) == 1 else ""
            if kind and kind != GENERIC_SENSOR_TYPE:
                name = kind
            else:
                name = label_prefix([ch.label for ch in group]) or name
        names.append(name)
    return unique_names(names)


def group_channels(channels: Iterable[SourceChannel]) -> list[list[SourceChannel]]:
    """Channels grouped by
    [`SourceChannel.group_key`][ondabatches.importing.SourceChannel.group_key], in order
    of first appearance.

    Examples
    --------
    >>> chs = [SourceChannel(i, f"ch{i}", "misc", f"ch{i}", "microvolt", 256.0, 0.1, 0.0,
    ...                      "int16", 1024, True) for i in range(19)]
    >>> [len(g) for g in group_channels(chs)]
    [19]
    """
    groups: dict[tuple[Any, ...], list[SourceChannel]] = {}
    for ch in channels:
        groups.setdefault(ch.group_key, []).append(ch)
    return list(groups.values())
