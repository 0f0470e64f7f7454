"""The schema-free half of config handling: read a YAML file, stack mappings (later ones win),
apply `key.path=value` overrides, and turn pydantic errors into lines that name the key path.
The pipeline schema that uses them lives in `medssl.platform.config`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from medssl.platform.errors import ConfigError


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `top` over `base`: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found; check the path")
    try:
        loaded = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}; fix the syntax") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{p}: the top level must be a mapping of sections, got {type(loaded).__name__}"
        )
    return loaded


def apply_override(raw: dict[str, Any], override: str) -> dict[str, Any]:
    """Apply one `key.path=value` override; the value is parsed as YAML (`[1, 2]`, `0.1`)."""
    if "=" not in override:
        raise ConfigError(f"override '{override}' must look like key.path=value")
    key, _, text = override.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override '{override}' has an empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    out = copy.deepcopy(raw)
    node: Any = out
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            # `pretrain.then.0.lr=...`: a number steps into a list of sections.
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"override '{override}': {'.'.join(parts[:i])} is a list of {len(node)}; "
                    f"use an index 0..{len(node) - 1}, not '{part}'"
                )
            if last:
                node[int(part)] = value
                return out
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(
                f"override '{override}': {'.'.join(parts[:i])} is a value, not a section"
            )
        if last:
            node[part] = value
            return out
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    return out


def validate_section(model: type[BaseModel], value: Any, key_path: str) -> BaseModel:
    """Validate a section owned by a component (a method's or a modality's settings)."""
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, prefix=key_path)) from None


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            break
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return None


def format_validation_error(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """One line per problem: `key.path: problem (got VALUE)`, listing allowed keys."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in ((prefix,) if prefix else ()) + loc)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{path}: unknown key{hint}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, (dict, BaseModel)) else f" (got {got!r})"
        lines.append(f"{path or '<top>'}: {msg}{shown}")
    return "invalid config:\n  " + "\n  ".join(lines)
