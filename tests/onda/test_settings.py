"""The Settings value: frozen, validated, JSON and pickle round trips, the environment
read once with errors that name the variable, and use_settings' scoping."""

from __future__ import annotations

import json
import pickle

import pytest

from ondabatches.errors import ArgumentError, ArgumentTypeError, CacheError, SizeLimitError
from ondabatches.onda import (
    Settings,
    _settings,
    current_settings,
    get_cache,
    set_cache,
    set_storage_options,
    storage_env,
    use_settings,
)

FULL = Settings(
    storage_options={"s3": {"anon": True, "client_kwargs": {"region_name": "eu-west-1"}}},
    allowed_protocols=("s3", "local"),
    allowed_prefixes=("s3://bucket/eeg/",),
    kernels="numpy",
    cache_directory="/tmp/ondabatches-cache",
    cache_max_bytes="64M",
    max_segment_bytes=1 << 30,
    max_concurrent_reads=8,
    max_open=16,
    max_state_json=4096,
)


def test_defaults_are_no_restriction_and_no_cache():
    s = Settings()
    assert not s.allowed and s.cache_directory is None and s.kernels == "auto"
    assert (s.max_concurrent_reads, s.max_open, s.max_state_json) == (32, 64, 1 << 20)
    assert s.to_env() == {} and repr(s) == "Settings()"


def test_values_are_normalized_and_frozen():
    assert FULL.allowed_protocols == ("s3", "file")  # fsspec's local aliases are "file"
    assert FULL.cache_max_bytes == 64 << 20
    with pytest.raises(AttributeError):
        FULL.kernels = "auto"
    with pytest.raises(TypeError):
        FULL.storage_options["s3"]["anon"] = False  # a read-only view, not the caller's dict
    mine = {"memory": {"x": 1}}
    s = Settings(storage_options=mine)
    mine["memory"]["x"] = 2
    assert s.storage_options["memory"]["x"] == 1


def test_round_trips_through_json_and_pickle():
    plain = json.loads(json.dumps(FULL.to_dict()))
    assert Settings.from_dict(plain) == FULL
    again = pickle.loads(pickle.dumps(FULL))
    assert again == FULL and hash(again) == hash(FULL)
    assert {FULL, again} == {FULL}
    assert eval(repr(FULL).replace("Settings(", "dict("), {}) == {
        k: v for k, v in FULL.to_dict().items() if v != Settings().to_dict()[k]
    }


def test_the_environment_form_reads_back():
    env = FULL.to_env()
    assert env["ONDABATCHES_MAX_CONCURRENT_READS"] == "8"
    assert env["ONDABATCHES_MAX_OPEN"] == "16"
    assert env["ONDABATCHES_MAX_STATE_JSON"] == "4096"
    assert env["ONDABATCHES_CACHE"] == f"/tmp/ondabatches-cache:{64 << 20}"
    assert json.loads(env["FSSPEC_S3"]) == {
        "anon": True,
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    back = Settings.from_env(env)
    # Storage options travel as fsspec's own FSSPEC_<PROTOCOL>, which fsspec reads.
    assert back == FULL.replace(storage_options={})


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"kernels": "numba"}, ArgumentError, r"kernels must be one of \['auto', 'numpy'\]"),
        ({"max_segment_bytes": 0}, SizeLimitError, "positive whole number of bytes, got 0"),
        ({"max_segment_bytes": True}, SizeLimitError, "got True"),
        ({"cache_max_bytes": "lots"}, CacheError, "cannot read a size from 'lots'"),
        ({"cache_directory": 3}, ArgumentTypeError, "cache_directory must be a path"),
        ({"allowed_prefixes": [""]}, ArgumentTypeError, "non-empty strings"),
        ({"allowed_protocols": 5}, ArgumentTypeError, "list of non-empty strings"),
        ({"storage_options": {"s3": 1}}, ArgumentTypeError, "map protocol names to mappings"),
        ({"storage_options": {"s3": {"f": object()}}}, ArgumentTypeError, "JSON-serializable"),
        ({"nope": 1}, ArgumentError, r"unknown settings \['nope'\]"),
        (
            {"max_concurrent_reads": 0},
            ArgumentError,
            "max_concurrent_reads must be a whole number from 1 to 1024, got 0",
        ),  # fmt: skip
        ({"max_open": 1 << 20}, ArgumentError, "max_open must be a whole number from 1 to 65536"),
        ({"max_open": "4"}, ArgumentError, "from 1 to 65536, got '4'"),
        ({"max_state_json": 100}, ArgumentError, f"from 1024 to {1 << 30}, got 100"),
        ({"max_state_json": True}, ArgumentError, "got True"),
    ],
)
def test_bad_values_are_typed_errors(changes, error, message):
    with pytest.raises(error, match=message):
        Settings().replace(**changes)


@pytest.mark.parametrize(
    ("name", "raw", "error"),
    [
        ("ONDABATCHES_CACHE", "nocolon", CacheError),
        ("ONDABATCHES_CACHE", "/tmp/c:many", CacheError),
        ("ONDABATCHES_MAX_SEGMENT_BYTES", "1.5", SizeLimitError),
        ("ONDABATCHES_KERNELS", "fast", ArgumentError),
        ("ONDABATCHES_MAX_CONCURRENT_READS", "0", ArgumentError),
        ("ONDABATCHES_MAX_OPEN", "many", ArgumentError),
        ("ONDABATCHES_MAX_STATE_JSON", "1e6", ArgumentError),
    ],
)
def test_a_malformed_variable_names_itself_and_its_value(name, raw, error):
    with pytest.raises(error, match=name) as info:
        Settings.from_env({name: raw})
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    ("name", "field", "least", "most"),
    [
        ("ONDABATCHES_MAX_CONCURRENT_READS", "max_concurrent_reads", 1, 1024),
        ("ONDABATCHES_MAX_OPEN", "max_open", 1, 1 << 16),
        ("ONDABATCHES_MAX_STATE_JSON", "max_state_json", 1 << 10, 1 << 30),
    ],
)
def test_a_limit_variable_is_read_within_its_range(name, field, least, most):
    for good in (least, most, " 1024 "):
        assert getattr(Settings.from_env({name: str(good)}), field) == int(good)
    for bad in (least - 1, most + 1):
        with pytest.raises(ArgumentError, match=rf"{name} \({field}\) must be a whole number "
                           rf"from {least} to {most}, got '{bad}'"):  # fmt: skip
            Settings.from_env({name: str(bad)})


def test_the_environment_is_read_once(monkeypatch):
    monkeypatch.setattr(_settings, "_current", None)
    monkeypatch.setenv("ONDABATCHES_MAX_SEGMENT_BYTES", "4096")
    assert current_settings().max_segment_bytes == 4096
    monkeypatch.setenv("ONDABATCHES_MAX_SEGMENT_BYTES", "8192")
    assert current_settings().max_segment_bytes == 4096  # not read again
    with use_settings(Settings.from_env()):  # unless asked
        assert current_settings().max_segment_bytes == 8192
    assert current_settings().max_segment_bytes == 4096
    monkeypatch.setattr(_settings, "_current", None)
    monkeypatch.delenv("ONDABATCHES_MAX_SEGMENT_BYTES")


def test_use_settings_scopes_and_plain_calls_last(tmp_path):
    before = current_settings()
    with use_settings(kernels="numpy") as outer:
        assert outer.previous is before and current_settings() is outer.settings
        with use_settings(FULL.replace(cache_directory=None)):
            assert current_settings().allowed_protocols == ("s3", "file")
        assert current_settings() is outer.settings
        set_storage_options("memory", ondabatches_test=5)  # a wrapper: changes the current
        assert current_settings().kernels == "numpy"
        assert current_settings().storage_options["memory"] == {"ondabatches_test": 5}
    assert current_settings() is before
    with pytest.raises(ArgumentTypeError, match="takes a Settings object"):
        use_settings({"kernels": "numpy"})


def test_set_cache_is_a_setting_forwarded_by_storage_env(tmp_path):
    with use_settings():
        set_cache(tmp_path / "c", "2M")
        assert current_settings().cache_directory == str(tmp_path / "c")
        assert get_cache().max_bytes == 2 << 20
        assert storage_env()["ONDABATCHES_CACHE"] == f"{tmp_path / 'c'}:{2 << 20}"
    assert get_cache() is None
