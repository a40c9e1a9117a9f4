"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="module")
def one_openmp_thread() -> Iterator[None]:
    """Run HistGradientBoosting on one OpenMP thread in the modules that ask for it.

    Its OpenMP threads spin-wait for each other, so a fit that takes 0.3 s on an idle machine takes
    10 s or more while another test suite holds a core; results do not depend on the thread count.
    """
    with threadpool_limits(limits=1, user_api="openmp"):
        yield
