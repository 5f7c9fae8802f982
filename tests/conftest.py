"""Shared test configuration.

The suite runs on CPU by default; set ``CONCEPTALG_TEST_DEVICE=cuda`` to run the device-aware
tests on a GPU. Tests marked ``gpu`` skip cleanly when no CUDA device is present.

Tests run torch on one intra-op thread: their tensors are small, so threads only add overhead,
and on a busy 2-core machine OpenMP spin-waits made small ops (a 2000×2 logsumexp) up to 100×
slower. Subprocesses started by tests keep torch's own default.
"""

import os

import pytest


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device():
    """The device the tests run on: ``CONCEPTALG_TEST_DEVICE`` (default ``cpu``)."""
    import torch

    return torch.device(os.environ.get("CONCEPTALG_TEST_DEVICE", "cpu"))
