"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.glib import GLibOracle, glib_unavailable_reason
from tests.ostree_cli import Zoo, build_zoo, require_ostree


@pytest.fixture(scope="session")
def glib() -> Iterator[GLibOracle]:
    """GLib's GVariant implementation, through ``/usr/bin/python3`` and python3-gi.

    Skipped when GLib is not reachable, except under ``CI=true`` where that fails.
    """
    reason = glib_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the GLib oracle is unavailable: {reason}", pytrace=False)
        pytest.skip(f"GLib oracle unavailable: {reason}")
    oracle = GLibOracle()
    try:
        yield oracle
    finally:
        oracle.close()


@pytest.fixture(scope="session")
def ostree_repo_zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    """One archive repository built by the real ``ostree`` CLI with every kind of object,
    mode, name, framing width, metadata type and ref (see :func:`tests.ostree_cli.build_zoo`).

    Shared by the whole session: tests read it and never change it (copy it first).
    Skipped without ``ostree``, except under ``CI=true`` where that fails.
    """
    require_ostree()
    return build_zoo(tmp_path_factory.mktemp("ostree-zoo"))
