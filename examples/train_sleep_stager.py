"""Train a small 1-D CNN sleep stager on the synthetic Onda dataset, on CPU.

    python examples/train_sleep_stager.py --steps 300

The whole pipeline, end to end: write a synthetic dataset (``make_dataset``), turn its
sleep-stage annotations into labels, draw ``RandomBatches`` of 150 s windows
(5 epochs of 30 s), materialize them on worker processes (a ``Batcher`` inside
``ondabatches.torch.BatchDataset``), and train a CNN that predicts one stage per 30 s
epoch: ``x`` is ``(batch, 6 channels, 19200 samples)`` at 128 Hz and ``y`` is
``(batch, 5)`` class indices 0..5 (``labels="classes"``: stage code - 1, ``int64``,
the target ``cross_entropy`` wants). The last 128 Hz recording is held out and scored at the
end with a ``SequentialBatches`` pass over all its windows.

``--modalities eeg,eog`` trains on several signals of each recording instead: the
scheme gets a montage (one window of the recording in every modality, each at its own
rate: EEG at 128 Hz, EOG at 64 Hz), ``x`` is a dict of tensors, one per modality, and
the model has one convolutional branch per modality whose per-epoch features are
concatenated before the stage head.

Halfway, a checkpoint (model, optimizer and the dataset's state) is written. At the
end the script shows that resuming works: it loads the checkpoint into a fresh model,
optimizer and dataset, trains the next steps again, and checks that the losses are
the very same numbers. ``--resume CHECKPOINT`` continues a previous run instead.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn
from torch.utils.data import DataLoader

from ondabatches import RandomBatches, SequentialBatches, label_signals, sort_and_trim_spans
from ondabatches.synthetic import EPOCH, STAGE_ENCODING, STAGES, make_dataset
from ondabatches.torch import BatchDataset

EPOCHS_PER_WINDOW = 5
RATE = 128.0  # the synthetic EEG layout with all six channels (c3 c4 m1 m2 o1 o2)
MICROVOLT_SCALE = 50.0  # brings the EEG to about unit scale


def conv_branch(channels: int) -> nn.Sequential:
    """Strided convolutions from ``channels`` inputs to 64 features, 64 times fewer samples."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv1d(cin, cout, 9, stride=4, padding=4), nn.BatchNorm1d(cout), nn.ReLU()]

    return nn.Sequential(*block(channels, 16), *block(16, 32), *block(32, 64))


class SleepStager(nn.Module):
    """Strided convolutions down to a few samples per epoch, then one stage per epoch."""

    def __init__(self, channels: int, epochs: int, n_stages: int = len(STAGES)):
        super().__init__()
        self.features = conv_branch(channels)
        # Averaging per epoch turns the filters' outputs into band powers of that epoch.
        self.per_epoch = nn.AdaptiveAvgPool1d(epochs)
        self.head = nn.Conv1d(64, n_stages, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.per_epoch(self.features(x / MICROVOLT_SCALE)))


class MultiModalStager(nn.Module):
    """One branch per modality, each at its own rate; their per-epoch features are
    concatenated, then one stage per epoch."""

    def __init__(self, channels: dict[str, int], epochs: int, n_stages: int = len(STAGES)):
        super().__init__()
        self.branches = nn.ModuleDict({name: conv_branch(c) for name, c in channels.items()})
        # Per-epoch averages line the branches up whatever their numbers of samples.
        self.per_epoch = nn.AdaptiveAvgPool1d(epochs)
        self.head = nn.Conv1d(64 * len(channels), n_stages, 1)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        features = [
            self.per_epoch(branch(x[name] / MICROVOLT_SCALE))
            for name, branch in self.branches.items()
        ]
        return self.head(torch.cat(features, dim=1))


def labeled_eeg(
    data: Path, recordings: int, hours: float, modalities: tuple[str, ...] = ()
) -> tuple[pa.Table, pa.Table]:
    """Write (or rewrite: it is deterministic) the dataset; split its 128 Hz EEG rows
    (with ``modalities``, the rows of those sensor types of the same recordings)."""
    ds = make_dataset(
        data, n_recordings=recordings, duration=round(hours * 3600 * 10**9),
        eog_every=1 if "eog" in modalities else 2, ecg_every=int("ecg" in modalities),
        emg_every=int("emg" in modalities),
    )  # fmt: skip
    annotations = sort_and_trim_spans(ds.annotations, epoch=EPOCH, by="recording")
    labeled = label_signals(
        ds.signals, annotations, labels_column="stage", epoch=EPOCH, encoding=STAGE_ENCODING
    )
    eeg = labeled.filter(pc.equal(labeled.column("sample_rate"), RATE))
    if eeg.num_rows < 2:
        sys.exit(f"need at least 2 recordings at {RATE} Hz: use --recordings 5 or more")
    if not modalities:
        return eeg.slice(0, eeg.num_rows - 1), eeg.slice(eeg.num_rows - 1)
    # Every signal of those sensor types of the recordings whose EEG is at 128 Hz.
    *training, held_out = eeg.column("recording").to_pylist()
    rows = labeled.filter(pc.is_in(labeled.column("sensor_type"), pa.array(modalities)))
    recording = rows.column("recording").to_pylist()  # UUIDs (no arrow kernel compares them)
    in_training = pa.array([r in training for r in recording])
    return rows.filter(in_training), rows.filter(pa.array([r == held_out for r in recording]))


def montage_of(modalities: tuple[str, ...]) -> dict:
    """The scheme's keyword for ``--modalities``: name -> (sensor type, all channels)."""
    return {"modalities": {name: (name, None) for name in modalities}} if modalities else {}


def channels_of(table: pa.Table, modalities: tuple[str, ...]) -> int | dict[str, int]:
    """Input channels of the model: one count, or one per modality."""
    counts = {}
    for row in table.select(["sensor_type", "channels"]).to_pylist():
        counts.setdefault(row["sensor_type"], len(row["channels"]))
    return {name: counts[name] for name in modalities} if modalities else counts["eeg"]


def stage_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # y holds classes 0..5 per epoch, (batch, epochs): logits are (batch, stages, epochs).
    return nn.functional.cross_entropy(model(x), y)


def train(model, optimizer, loader, first_step: int, last_step: int, on_step) -> list[float]:
    """Steps ``first_step + 1 .. last_step``; ``on_step(step)`` runs after each."""
    model.train()
    losses = []
    for step, (x, y) in zip(range(first_step + 1, last_step + 1), loader, strict=False):
        loss = stage_loss(model, x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        on_step(step, losses)
    return losses


@torch.no_grad()
def evaluate(
    model: nn.Module, table: pa.Table, batch_size: int, workers: int, montage: dict
) -> tuple[float, float]:
    """Accuracy on every window of ``table``, and the majority-stage baseline."""
    model.eval()
    scheme = SequentialBatches(
        table, batch_size=batch_size, batch_duration=EPOCHS_PER_WINDOW * EPOCH, **montage
    )
    correct = total = 0
    counts = torch.zeros(len(STAGES), dtype=torch.long)
    with BatchDataset(scheme, scheme.initial_state(), workers=workers, labels="classes") as ds:
        for x, y in DataLoader(ds, batch_size=None):
            correct += int((model(x).argmax(dim=1) == y).sum())
            total += y.numel()
            counts += torch.bincount(y.flatten(), minlength=len(counts))
    return correct / total, int(counts.max()) / total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps in all")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="Batcher worker processes")
    parser.add_argument("--recordings", type=int, default=9, help="every 4th is at 128 Hz")
    parser.add_argument("--hours", type=float, default=1.0, help="duration of each recording")
    parser.add_argument("--data", type=Path, help="dataset folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, help="checkpoint folder (default: a temporary one)")
    parser.add_argument("--resume", type=Path, help="continue from this checkpoint")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--modalities",
        default="",
        help="sensor types to train on together, e.g. eeg,eog (of eeg, eog, ecg, emg; "
        "default: the EEG alone, one tensor)",
    )
    args = parser.parse_args(argv)
    modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
    if set(modalities) - {"eeg", "eog", "ecg", "emg"} or len(set(modalities)) < len(modalities):
        parser.error(f"--modalities {args.modalities!r}: give distinct ones of eeg, eog, ecg, emg")

    with tempfile.TemporaryDirectory(prefix="sleep-stager-") as scratch:
        data = args.data or Path(scratch) / "data"
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        checkpoint_path = out / "checkpoint.pt"

        started = time.perf_counter()
        train_table, eval_table = labeled_eeg(data, args.recordings, args.hours, modalities)
        montage = montage_of(modalities)
        batches = RandomBatches(
            train_table,
            batch_size=args.batch_size,
            batch_duration=EPOCHS_PER_WINDOW * EPOCH,
            **montage,
        )
        n_train, n_eval = (len(set(t.column("recording").to_pylist())) for t in (
            train_table, eval_table))  # fmt: skip
        print(
            f"dataset: {n_train} training and {n_eval} held-out recordings "
            f"({', '.join(modalities) or 'eeg'}; EEG at {RATE:g} Hz), written to {data} "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

        def fresh(state=None):
            torch.manual_seed(args.seed)
            channels = channels_of(train_table, modalities)
            stager = MultiModalStager if modalities else SleepStager
            model = stager(channels, EPOCHS_PER_WINDOW)
            optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
            dataset = BatchDataset(
                batches, batches.initial_state(args.seed), workers=args.workers, labels="classes"
            )
            step = 0
            if state is not None:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                dataset.load_state_dict(state["data"])
                step = state["step"]
            return model, optimizer, dataset, step

        resumed = torch.load(args.resume, weights_only=True) if args.resume else None
        model, optimizer, dataset, first_step = fresh(resumed)
        inputs = channels_of(train_table, modalities)
        inputs = inputs if modalities else {"eeg": inputs}
        print(
            f"model: {type(model).__name__}, inputs "
            + ", ".join(f"{name} {n} channel(s)" for name, n in inputs.items()),
            flush=True,
        )
        if resumed is not None:
            print(f"resumed from {args.resume} at step {first_step}", flush=True)
        checkpoint_step = first_step + max((args.steps - first_step) // 2, 1)

        def on_step(step: int, losses: list[float]) -> None:
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"the loss is {losses[-1]} at step {step}")
            if step % args.log_every == 0 or step == args.steps:
                window = losses[-args.log_every :]
                print(f"step {step} loss {sum(window) / len(window):.6f}", flush=True)
            if step == checkpoint_step:
                state = {
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "data": dataset.state_dict(),
                }
                torch.save(state, checkpoint_path)
                print(f"checkpoint at step {step}: {checkpoint_path}", flush=True)

        started = time.perf_counter()
        with dataset:
            loader = DataLoader(dataset, batch_size=None, num_workers=0)
            losses = train(model, optimizer, loader, first_step, args.steps, on_step)
            waited = dataset.stats()["wait_fraction"]
        elapsed = time.perf_counter() - started
        print(
            f"trained steps {first_step + 1}..{args.steps} in {elapsed:.1f} s "
            f"({len(losses) / elapsed:.1f} steps/s; waiting for data {100 * waited:.1f}% "
            "of the time)",
            flush=True,
        )

        accuracy, baseline = evaluate(model, eval_table, args.batch_size, args.workers, montage)
        print(
            f"held-out accuracy {accuracy:.3f} per 30 s epoch "
            f"(always guessing the most common stage: {baseline:.3f})",
            flush=True,
        )

        # Resume from the halfway checkpoint into fresh objects: the next steps must
        # give exactly the same losses as the uninterrupted run did.
        if checkpoint_path.exists() and checkpoint_step < args.steps:
            state = torch.load(checkpoint_path, weights_only=True)
            model, optimizer, dataset, step = fresh(state)
            last = min(step + 5, args.steps)
            with dataset:
                loader = DataLoader(dataset, batch_size=None, num_workers=0)
                again = train(model, optimizer, loader, step, last, lambda *_: None)
            original = losses[step - first_step : last - first_step]
            same = again == original
            print(
                f"resume check: steps {step + 1}..{last} from the checkpoint "
                f"{'reproduce' if same else 'DO NOT reproduce'} the original losses "
                f"({', '.join(f'{v:.6f}' for v in again)})",
                flush=True,
            )
            if not same:
                return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
