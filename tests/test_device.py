"""Device and precision choices: clear messages for devices that do not exist, on any machine."""
from __future__ import annotations

import pytest
import torch

from diffueraser.__main__ import main
from diffueraser.engine import resolve_device
from diffueraser.errors import InputError
from diffueraser.settings import Settings


def test_a_gpu_index_past_the_machines_gpus_is_refused_naming_the_ones_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(InputError, match=r"'cuda:3' was asked for but this machine has 2 GPUs \(cuda:0 to cuda:1\)"):
        resolve_device(Settings(device="cuda:3"))
    assert resolve_device(Settings(device="cuda:1")) == (torch.device("cuda:1"), torch.float16)


def test_cuda_without_a_gpu_is_refused_with_what_to_use_instead(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available here; use 'cpu' or 'auto'"):
        resolve_device(Settings(device="cuda"))
    assert resolve_device(Settings(device="auto")) == (torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("device, words", [("cuda:x", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cuda:x'"),
                                           ("gpu", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'")])
def test_the_command_line_refuses_a_malformed_device_with_exit_2(device, words, tmp_path, capsys):
    code = main(["in.mp4", "mask.png", "-o", str(tmp_path / "o.mp4"), "--device", device, "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and words in err and "Traceback" not in err
