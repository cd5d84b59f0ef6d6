"""The page's parameter controls and the endpoint's parameters, generated from `Settings`' knobs.

A setting declared with `knob(...)` in `settings.py` appears here by itself: a checkbox for a
bool, a radio for a choice, a slider for a range with a step, a number box otherwise; None is
shown as -1 where the setting allows it ("random", "automatic"). `settings_from_page` turns the
values back into `Settings` under the server's limits.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import fields
from typing import Any, Callable, Optional

from ..errors import InputError
from ..settings import Knob, Settings, is_optional, kind, knobs
from .uploads import Limits

NONE_ON_PAGE = -1
"""How the page and the API spell None for an optional setting."""


def page_settings() -> list[str]:
    """Names of the settings the page and the API expose, main ones first, in declaration order."""
    shown = [(name, k) for name, k in knobs().items() if k.page != "hidden"]
    return [n for n, k in shown if k.page == "main"] + [n for n, k in shown if k.page == "advanced"]


def capped(name: str, limits: Limits) -> Optional[float]:
    """The server's cap on a setting, if it has one."""
    return {"max_seconds": limits.max_seconds, "max_size": limits.max_size}.get(name)


def make_control(name: str, default: Any, limits: Limits):
    """The Gradio component for one setting, labelled and explained by its knob."""
    import gradio as gr

    k, value_kind = knobs()[name], kind(name)
    value = NONE_ON_PAGE if default is None else default
    number_box = k.step is None or (default is None and is_optional(name))
    info = k.help + (f" {NONE_ON_PAGE}: {k.none}." if k.none and is_optional(name) and number_box else "")
    common = dict(label=k.label, info=info, elem_id=f"setting-{name.replace('_', '-')}")
    if value_kind is bool:
        return gr.Checkbox(value=bool(default), **common)
    if k.choices is not None:
        return gr.Radio(list(k.choices), value=default, **common)
    cap = capped(name, limits)
    high = k.high if cap is None else min(k.high, cap)
    if not number_box:
        value = min(value, high)
        return gr.Slider(k.low, high, value=value, step=k.step, **common)
    return gr.Number(value=value, precision=0 if value_kind is int else None, **common)


def settings_from_page(values: dict[str, Any], limits: Limits, base: Settings) -> Settings:
    """Settings for one request: the page's (or API's) values over `base`, checked against the limits.

    Raises InputError naming the setting for a value of the wrong type, out of range or over the
    server's limits.
    """
    changes = {name: _from_page(name, value) for name, value in values.items()}
    for name, value in changes.items():
        cap = capped(name, limits)
        if cap is None:
            continue
        if value is None:
            raise InputError(f"{knobs()[name].label} must be set on this server (at most {cap:g}).")
        if isinstance(value, (int, float)) and value > cap:
            unit = " s" if name == "max_seconds" else " px"
            raise InputError(f"{knobs()[name].label} is {value:g}{unit}, over this server's limit of {cap:g}{unit}"
                             f"{'; trim the video or run the app yourself' if name == 'max_seconds' else ''}.")
    return base.replace(**changes)


def _from_page(name: str, value: Any) -> Any:
    """A page or API value as the setting's own type (-1 as None where allowed)."""
    k, value_kind = knobs()[name], kind(name)
    if value is None:
        return None
    if value_kind is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{k.label} ({name}) must be true or false, got {value!r}")
    if value_kind in (int, float):
        number = _number(name, k, value)
        if is_optional(name) and k.none and number == NONE_ON_PAGE:
            return None
        if value_kind is int:
            if number != int(number):
                raise InputError(f"{k.label} ({name}) must be a whole number, got {value!r}")
            return int(number)
        return float(number)
    if not isinstance(value, str):
        raise InputError(f"{k.label} ({name}) must be text, got {value!r}")
    return value


def _number(name: str, k: Knob, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{k.label} ({name}) must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{k.label} ({name}) must be a finite number, got {value!r}")
    return value


def with_parameters(fn: Callable[..., Any], leading: list[str], names: list[str], doc: str,
                    progress: Any = None, session: bool = False,
                    defaults: Optional[dict[str, Any]] = None) -> Callable[..., Any]:
    """`fn(*leading_values, {setting: value}, progress[, session])` presented to Gradio as a function
    of named parameters: `leading`, then one per setting in `names`, then `progress` if given, then
    the request (passed on as its session's id) if `session`. `defaults` gives leading parameters
    a default (optional inputs of an endpoint).

    Gradio names the endpoint's parameters and documents them from the signature and the
    docstring; these are generated so that each setting is declared only once.
    """
    def handler(*args: Any) -> Any:
        lead, values, rest = args[:len(leading)], args[len(leading):len(leading) + len(names)], args[len(leading) + len(names):]
        rest = list(rest)
        extra = [rest.pop(0) if progress is not None and rest else None]
        if session:
            request = rest.pop(0) if rest else None
            extra.append(str(getattr(request, "session_hash", "") or ""))
        return fn(*lead, dict(zip(names, values)), *extra)

    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=(defaults or {}).get(n, inspect.Parameter.empty)) for n in leading]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=_api_default(n)) for n in names]
    if progress is not None:
        params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=progress))
    if session:
        import gradio as gr

        params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                         annotation=gr.Request))
        handler.__annotations__ = {"request": gr.Request}  # how Gradio finds the request parameter
    handler.__signature__ = inspect.Signature(params)
    handler.__name__ = getattr(fn, "__name__", "handler")
    lines = [f"    {n}: {knobs()[n].help}" for n in names]
    handler.__doc__ = doc + "\n\nParameters:\n" + "\n".join(lines)
    return handler


def _api_default(name: str) -> Any:
    return page_value(name, next(f.default for f in fields(Settings) if f.name == name))


def page_value(name: str, value: Any, limits: Optional[Limits] = None) -> Any:
    """A setting's value as the page shows it: None as -1, within the server's cap."""
    if value is None:
        return NONE_ON_PAGE
    cap = capped(name, limits) if limits is not None else None
    return min(value, cap) if cap is not None and isinstance(value, (int, float)) else value
