"""Fixtures shared by several test files."""
import huggingface_hub.constants  # noqa: F401  read HF_HUB_OFFLINE now, before any test sets it
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread; several threads only contend on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
