"""Fixtures shared with the serving tests."""

from tests.serve.conftest import no_leaks  # noqa: F401 - the leak-checking fixture
