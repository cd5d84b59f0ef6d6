"""Paths and loaders for the copied reference fixtures (see tests/fixtures/README.md)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).parent / "fixtures"


def load_npz(name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays of parity/<name>.npz and its decoded meta_json."""
    with np.load(ROOT / "parity" / f"{name}.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "meta_json"}
        meta = json.loads(z["meta_json"].item()) if "meta_json" in z.files else {}
    return arrays, meta


def load_json(relpath: str) -> Any:
    """A JSON fixture by path relative to tests/fixtures, e.g. 'keys/brushnet.json'."""
    return json.loads((ROOT / relpath).read_text())


def assert_close_rel(actual, expected, rel: float, name: str = "") -> None:
    """max|actual - expected| <= rel * max|expected|, the reference README's tolerance rule."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    err = float(np.abs(actual - expected).max()) if expected.size else 0.0
    bound = rel * float(np.abs(expected).max()) if expected.size else 0.0
    assert err <= bound, f"{name}: max abs error {err:.3e} > {bound:.3e} ({rel} x max|ref|)"
