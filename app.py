"""The Space's entry point: `python app.py` builds the page from `diffueraser.app` and serves it.

Server limits come from environment variables DIFFUERASER_APP_<FIELD> (see
`diffueraser.app.uploads.Limits`); `python app.py --help` lists the options.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Optional

try:  # before torch: on ZeroGPU, `spaces` patches CUDA at import
    import spaces  # noqa: F401
except ImportError:  # a machine without the `spaces` package
    pass

from diffueraser.app import TITLE, EngineState, Limits, build_demo, find_examples, launch

log = logging.getLogger("app")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--weights", help="weights folder in the released layout (default: $DIFFUERASER_WEIGHTS, "
                        "./weights, then the Hugging Face cache)")
    parser.add_argument("--offline", action="store_true", help="never download checkpoints")
    parser.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    limits = Limits.from_env()
    state = EngineState.load(args.weights, offline=args.offline)
    if state.offline_reason:  # nothing else in this process tries the Hub again (mask models included)
        from diffueraser.weights.fetch import go_offline

        go_offline()
        log.warning("%s: serving offline with the checkpoints present (%s)", state.offline_reason, state.rung.name)
    demo = build_demo(state, limits, find_examples())
    launch(demo, limits, server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
