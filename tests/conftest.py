"""Shared fixtures."""

import pytest
import torch


@pytest.fixture()
def one_torch_thread():
    """Tiny models run far faster on one thread on a busy machine (and subprocesses started by the
    test match it); the previous thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
