"""A ModelConfig field given on a bench's command line as NAME=VALUE (the value in JSON)."""
from __future__ import annotations

import json

from clickpose.model.presets import ModelConfig, preset_config


def parse_model_option(text: str, flag: str) -> tuple[str, object]:
    """'name=value' (value in JSON: true, 0.5, "x") -> (name, value); `flag` names the
    command-line option in the error."""
    name, sep, raw = text.partition("=")
    if not sep or name not in ModelConfig.model_fields:
        raise SystemExit(f"{flag} {text!r}: give NAME=VALUE with NAME a ModelConfig field, "
                         "e.g. max_humans=6")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise SystemExit(f"{flag} {text!r}: the value {raw!r} is not JSON "
                         "(true, false, a number, or a quoted string)") from None
    return name, value


def check_preset_options(options: dict, preset: str = "tiny") -> dict:
    """`options` when the preset takes them; otherwise stop with the config's own message
    (a value it refuses, e.g. hidden_dim=70), before a bench draws any data."""
    try:
        preset_config(preset, **options)
    except ValueError as error:
        raise SystemExit(f"model options {options}: {error}") from None
    return options
