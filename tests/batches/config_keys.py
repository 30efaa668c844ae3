"""The configuration keys of the single-signal schemes, in their order, shared by the
tests that pin them (a new or reordered key changes every saved state's config)."""

from __future__ import annotations

#: The keys after each scheme's own: the table's size and digests.
TABLE_KEYS = [
    "n_rows",
    "digest.recordings",
    "digest.spans",
    "digest.channels",
    "digest.rates",
    "digest.encodings",
    "digest.labels",
    "digest.weights",
]
RANDOM_KEYS = ["scheme", "batch_size", "batch_duration_ns", "n_channels", "channels", *TABLE_KEYS]
SEQUENTIAL_KEYS = [
    "scheme",
    "batch_size",
    "batch_duration_ns",
    "stride_ns",
    "world_size",
    "drop_last",
    "channels",
    *TABLE_KEYS,
]
