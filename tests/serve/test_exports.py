"""The public names of ondabatches.serve are exactly the curated ones."""

import ondabatches
import ondabatches.serve


def test_serve_exports():
    assert ondabatches.serve.__all__ == ["AutoWorkers", "BatchScheme", "Batcher", "RayBatcher"]
    for name in ondabatches.serve.__all__:  # AutoWorkers came later: serve only
        assert (name in ondabatches.__all__) == (name != "AutoWorkers")
        if name in ondabatches.__all__:
            assert getattr(ondabatches, name) is getattr(ondabatches.serve, name)
