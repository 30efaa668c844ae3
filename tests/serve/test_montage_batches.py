"""The Batcher's conformance for montage schemes.

On every backend (a loky executor too) and worker count, a ``RandomBatches`` with
zero-filled modalities (and their masks) and a rank-sharded, resampled and
concatenated ``SequentialBatches`` give bit for bit the batches that
``materialize_batch`` gives inline; a JSON state resumes the same stream through a
Batcher in a fresh process; nothing is left behind (shared-memory segments,
processes, threads).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from ondabatches import Batcher, BatchState, RandomBatches, SequentialBatches, materialize_batch
from ondabatches.batches import ExcludedRecordingsWarning
from ondabatches.serve._tree import flatten
from tests.psg import MONTAGE, S, montage_schemes
from tests.serve.conftest import ROOT
from tests.serve.test_trees import assert_same_tree

pytestmark = pytest.mark.timeout(120)

#: Batches taken from the random scheme (it is endless).
N_RANDOM = 4


@pytest.fixture(scope="module")
def schemes(psg_labeled):
    return montage_schemes(psg_labeled)


@pytest.fixture(scope="module")
def references(schemes):
    """Per scheme, every (x, y) and next state from its initial state, materialized inline."""
    out = {}
    for name, scheme in schemes.items():
        state, got = scheme.initial_state(seed=4), []
        while len(got) < (N_RANDOM if name == "random" else 100):
            step = scheme.iterate_batch(state)
            if step is None:
                break
            batch, state = step
            got.append((materialize_batch(batch), state))
        out[name] = got
    return out


def test_the_references_exercise_masks_ranks_and_concatenation(schemes, references):
    masks = np.concatenate([x["mask"]["ecg"] for (x, _), _ in references["random"]])
    assert masks.any() and not masks.all()  # recordings with and without ECG
    ecg = np.concatenate([x["ecg"] for (x, _), _ in references["random"]])
    assert not ecg[~masks].any() and ecg[masks].any(axis=(1, 2)).all()  # zeros where absent
    x, _ = references["random"][0][0]
    assert list(x) == [*MONTAGE, "mask"] and x["emg"].shape == (4, 1, 60 * 512)
    # Each rank gets the same number of batches; the windows of both cover the scheme's.
    assert len(references["rank0"]) == len(references["rank1"]) >= 2
    (x, y), _ = references["rank0"][0]
    assert isinstance(x, np.ndarray) and x.shape == (3, 1 + 2 + 1 + 1, 60 * 128)
    n_windows = schemes["rank0"].n_windows
    assert sum(len(y) for name in ("rank0", "rank1") for (_, y), _ in references[name]) == (
        n_windows + n_windows % 2
    )


def _case(name: str, workers: int):
    marks = [pytest.mark.ray] if name == "ray" else []
    if workers == 1 and name in ("processes", "ray"):
        marks.append(pytest.mark.slow)  # seconds per pool start: 2 workers in the default run
    return pytest.param((name, workers), marks=marks, id=f"{name}-{workers}")


@pytest.fixture(
    params=[
        *(_case(n, w) for n in ("inline", "threads", "processes", "ray") for w in (1, 2)),
        _case("executor", 2),  # a loky executor's 2 workers
    ]
)
def backend(request):
    """What to pass as ``backend`` (an executor itself for "executor") and a worker count."""
    name, workers = request.param
    if name == "ray":
        request.getfixturevalue("ray_session")
    if name == "executor":
        return request.getfixturevalue("loky_executor"), workers
    return name, workers


def take_all(batcher, state, limit):
    out = []
    while len(out) < limit and (result := batcher.take(state, timeout=60)) is not None:
        out.append(result)
        state = result[1]
    return out


def test_montage_batches_match_inline_on_every_backend(backend, schemes, references, no_leaks):
    backend, workers = backend
    for name, scheme in schemes.items():
        expected = references[name]
        with Batcher(scheme, backend=backend, workers=workers, backoff=0.01) as batcher:
            state = scheme.initial_state(seed=4)
            batcher.start(state)
            # A finite scheme's Batcher is asked for one more: it says the scheme ended.
            got = take_all(batcher, state, len(expected) + (name != "random"))
            assert batcher.status == ("running" if name == "random" else "done")
        assert len(got) == len(expected), name
        for ((x, y), s), ((ex, ey), es) in zip(got, expected, strict=True):
            assert s == es
            assert_same_tree((x, y), (ex, ey))


RESUME = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    from ondabatches import Batcher, BatchState, read_annotations, read_signals
    from ondabatches.serve._tree import flatten
    from ondabatches.synthetic import SyntheticDataset
    from tests.psg import label, montage_schemes

    if __name__ == "__main__":  # worker processes import this module
        root, name, state, out = sys.argv[1:]
        ds = SyntheticDataset(root, None, None, read_signals(root + "/signals.arrow"),
                              read_annotations(root + "/annotations.arrow"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheme = montage_schemes(label(ds))[name]
        state, leaves, states = BatchState.from_json(state), [], []
        with Batcher(scheme, backend="processes", workers=2) as batcher:
            batcher.start(state)
            while len(states) < 2 and (result := batcher.take(state, timeout=60)):
                batch, state = result
                leaves += flatten(batch)[0]
                states.append(state.to_json())
        np.savez(out, *leaves, states=json.dumps(states))
    """
)


@pytest.mark.parametrize("name", ["random", "rank1"])
def test_json_resume_through_the_batcher_in_a_fresh_process(
    name, psg, schemes, references, tmp_path, no_leaks
):
    scheme, out = schemes[name], tmp_path / "resumed.npz"
    checkpoint = references[name][0][1].to_json()  # after the first batch
    script = tmp_path / "resume.py"
    script.write_text(RESUME)
    subprocess.run(
        [sys.executable, str(script), str(psg.root), name, checkpoint, str(out)],
        cwd=ROOT, check=True, timeout=100,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    # Here, a Batcher on threads from the same JSON state.
    with Batcher(scheme, backend="threads", workers=2) as batcher:
        state = BatchState.from_json(checkpoint)
        batcher.start(state)
        here = take_all(batcher, state, 2)
    with np.load(out) as saved:
        states = json.loads(str(saved["states"]))
        leaves = [saved[f"arr_{k}"] for k in range(len(saved.files) - 1)]
    assert [BatchState.from_json(s) for s in states] == [s for _, s in here]
    expected = [leaf for batch, _ in here for leaf in flatten(batch)[0]]
    assert len(leaves) == len(expected)
    for got, want in zip(leaves, expected, strict=True):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    for (batch, _), (ref, _) in zip(here, references[name][1:3], strict=True):
        assert_same_tree(batch, ref)


def test_sequential_ranks_through_the_batcher_cover_each_window_once(psg_labeled):
    # Independently of the Batcher's arrays: the items the ranks' schemes draw.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExcludedRecordingsWarning)
        whole = SequentialBatches(psg_labeled, modalities=MONTAGE, batch_size=3,
                                  batch_duration=60 * S)  # fmt: skip
    windows = []
    state = whole.initial_state()
    while (step := whole.iterate_batch(state)) is not None:
        windows += [(it.recording, it.window) for it in step[0]]
        state = step[1]
    sharded = []
    for scheme in montage_schemes(psg_labeled).values():
        if isinstance(scheme, RandomBatches):
            continue
        state = scheme.initial_state()
        while (step := scheme.iterate_batch(state)) is not None:
            sharded += [(it.recording, it.window) for it in step[0] if not it.padding]
            state = step[1]
    assert sorted(sharded, key=str) == sorted(windows, key=str)
    assert len(set(windows)) == len(windows)
