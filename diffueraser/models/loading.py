"""The released config.json files, read in memory: keys the released classes wrote but never read.

Strict loading of the weights (every tensor present, expected and of the right shape) is the
weights package's `load_strict`; models never open files.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import CheckpointError

ANY_VALUE = object()
"""Marks a released config key whose value does not matter (the released class ignored it)."""


class ReleasedConfigMixin:
    """Mixin for a diffusers ModelMixin/ConfigMixin class that accepts the released config.json as is.

    `_released_config_extras` maps the keys a released config.json carries without this class using them to
    the only value that is safe to ignore (or `ANY_VALUE`); another value is refused, not silently ignored.
    """

    _released_config_extras: Mapping[str, Any] = {}

    @classmethod
    def extract_init_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        config_dict = dict(config_dict)
        for key, allowed in cls._released_config_extras.items():
            if key not in config_dict:
                continue
            value = config_dict.pop(key)
            if allowed is not ANY_VALUE and value != allowed:
                raise CheckpointError(
                    f"{cls.__name__} config: `{key}: {value!r}` is not supported (the released model has {allowed!r})."
                )
        return super().extract_init_dict(config_dict, **kwargs)
