"""Reading the configuration file within bounds, and describing invalid settings without repeating secrets.

A configuration holds secrets (the MongoDB URI, the deployment token), and a mistyped key (`url` for `uri`) has
no declared type that marks it secret. So messages name keys; they repeat a value only for a known, non-secret
key whose value is a short scalar, and any URI's credentials are hidden. The file is bounded in size, YAML
aliases are refused (a 500-byte "billion laughs" file expands to gigabytes), and every message is one line of
bounded length.
"""

from __future__ import annotations

import difflib
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import SettingsError

from schemas import redact_credentials

__all__ = ["MAX_CONFIG_BYTES", "ConfigError", "describe_environment", "describe_invalid", "read_yaml"]

MAX_CONFIG_BYTES = 1024 * 1024
"""Largest configuration file read (the shipped one is under 10 KB)."""
MAX_ERRORS_LISTED = 10
MAX_VALUE_SHOWN = 60
"""Longest value repeated in a message (a known, non-secret key's scalar only)."""
MAX_MESSAGE_CHARS = 200
"""Longest description of one key's problem."""


class ConfigError(ValueError):
    """The configuration file or a configuration value is invalid."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


class _BadScalar(Exception):
    def __init__(self, node: yaml.Node, error: Exception) -> None:
        super().__init__(str(error))
        self.node, self.error = node, error


class _AliasRefused(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__("alias")
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (`*name`) and whose failed date scalars (2020-02-30) remember their node,
    so the key can be named."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            raise _AliasRefused(self.peek_event().start_mark)
        return super().compose_node(parent, index)  # type: ignore[no-any-return]

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:  # type: ignore[override]
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise _BadScalar(node, exc) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


def _key_of(text: str, target: yaml.Node) -> str:
    """The dotted key whose value is the node at `target`'s position in the YAML `text` (which holds no alias)."""
    def walk(node: yaml.Node, path: tuple[str, ...]) -> tuple[str, ...] | None:
        if node.start_mark.index == target.start_mark.index and isinstance(node, yaml.ScalarNode):
            return path
        children: list[tuple[str, yaml.Node]] = []
        if isinstance(node, yaml.MappingNode):
            children = [(str(key.value), value) for key, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            children = [(str(i), item) for i, item in enumerate(node.value)]
        for name, child in children:
            found = walk(child, (*path, name))
            if found is not None:
                return found
        return None

    root = yaml.compose(text, Loader=_Loader)
    found = walk(root, ()) if root is not None else None
    return _clip(".".join(found), MAX_VALUE_SHOWN) if found else "<unknown key>"


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in the configuration file at `path`.

    Raises:
        ConfigError: the file is missing, larger than MAX_CONFIG_BYTES, not YAML, uses an alias, nests too
            deeply, or holds an impossible date (file, line and key named; never more of the file).
    """
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open("rb") as handle:
        raw = handle.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not read")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        content = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except _AliasRefused as alias:
        raise ConfigError(f"config file {path}, line {alias.mark.line + 1}: YAML aliases (*name) are not allowed "
                          "in the configuration: write the value out") from None
    except _BadScalar as bad:
        raise ConfigError(f"config file {path}, line {bad.node.start_mark.line + 1}: {_key_of(text, bad.node)}: "
                          f"{_clip(str(bad.node.value), MAX_VALUE_SHOWN)!r} is not a valid date ({bad}); "
                          "write YYYY-MM-DD") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests too deeply to be a configuration") from None
    except yaml.MarkedYAMLError as exc:
        where = f", line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}" if exc.problem_mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_clip(' '.join(str(exc).split()), 120)}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return content


def describe_invalid(error: ValidationError, root: type[BaseModel], env_prefix: str) -> str:
    """One line naming every invalid key of `root` (at most MAX_ERRORS_LISTED) and what is wrong with it.

    An unknown key is named with the closest known one ("did you mean `uri`?") and the environment variable
    that set it, if one did; its value is never repeated.
    """
    items = []
    errors = error.errors()
    for item in errors[:MAX_ERRORS_LISTED]:
        loc = [str(part) for part in item["loc"]]
        key = _clip(".".join(loc), 2 * MAX_VALUE_SHOWN) or "<root>"
        if item["type"] == "extra_forbidden":
            items.append(f"{key}{_from_environment(loc, env_prefix)}: unknown key{_known_keys(root, loc)}")
            continue
        message = item["msg"].removeprefix("Value error, ")
        items.append(f"{key}: {_clip(message, MAX_MESSAGE_CHARS)}{_shown_input(root, loc, item.get('input'))}")
    more = f"; and {len(errors) - MAX_ERRORS_LISTED} more" if len(errors) > MAX_ERRORS_LISTED else ""
    return redact_credentials("invalid configuration: " + "; ".join(items) + more)


def describe_environment(error: SettingsError, root: type[BaseModel], env_prefix: str,
                         environ: Mapping[str, str] | None = None) -> str:
    """Name the variables of `env_prefix`, and their keys, whose values are not the JSON their keys need."""
    bad = []
    for name, value in sorted((os.environ if environ is None else environ).items()):
        if not name.upper().startswith(env_prefix) or name.upper() == f"{env_prefix}CONFIG":
            continue
        key = ".".join(part.lower() for part in name[len(env_prefix):].split("__"))
        try:
            json.loads(value)
        except json.JSONDecodeError as exc:
            kind = _json_kind(root, key)
            if kind:  # a section's value may hold a secret (a MongoDB URI): not repeated
                shown = f"{_clip(value, MAX_VALUE_SHOWN)!r} " if kind == "collection" else ""
                bad.append(f"{name} (key {key}): {shown}is not JSON ({exc.msg}); give lists and mappings "
                           """as JSON, e.g. '["VCB", "VIC"]' or '{"GOOG": "XNYS"}'""")
    fallback = f"{type(error).__name__}: {_clip(' '.join(str(error).split()), MAX_MESSAGE_CHARS)}"
    return redact_credentials("invalid configuration in the environment: " + "; ".join(bad or [fallback]))


def _from_environment(loc: list[str], env_prefix: str) -> str:
    name = env_prefix + "__".join(part.upper() for part in loc)
    return f" (from {name})" if any(n.upper() == name for n in os.environ) else ""


def _known_keys(root: type[BaseModel], loc: list[str]) -> str:
    """`(did you mean `uri`?)` for a near miss, else the keys the section accepts (when few)."""
    parent = _model_at(root, loc[:-1])
    if parent is None:
        return ""
    known = sorted(parent.model_fields)
    close = difflib.get_close_matches(loc[-1].lower(), known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean `{close[0]}`?)"
    return f" (known keys: {', '.join(known)})" if len(known) <= 12 else ""


def _shown_input(root: type[BaseModel], loc: list[str], value: Any) -> str:
    """` (got 3)` for a known, non-secret key's short scalar value; nothing for any other value."""
    annotation = _annotation(root, loc)
    if annotation is None or _is_secret(annotation) or isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= MAX_VALUE_SHOWN):
        return f" (got {value!r})"
    return ""


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    """The settings section at `loc` (a list of keys from the root), or None when there is none."""
    model: Any = root
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        model = fields[part].annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _annotation(root: type[BaseModel], loc: list[str]) -> Any:
    """The annotation of the field at `loc`, of the collection holding an item at `loc`, or None (unknown)."""
    model: Any = root
    annotation: Any = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return annotation  # an item of a collection field: judged by the field
        if part not in fields:
            return None
        annotation = model = fields[part].annotation
    return annotation


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _json_kind(root: type[BaseModel], key: str) -> str | None:
    """"collection" or "section" when the settings field at dotted `key` is read as JSON, else None."""
    annotation = _annotation(root, key.split("."))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [_kind(arg) for arg in typing.get_args(annotation)]
        return next((kind for kind in kinds if kind), None)
    return _kind(annotation)


def _kind(annotation: Any) -> str | None:
    origin = typing.get_origin(annotation) or annotation
    if origin in (list, tuple, dict, set, frozenset):
        return "collection"
    return "section" if isinstance(origin, type) and issubclass(origin, BaseModel) else None
