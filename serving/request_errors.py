"""A model server's 422 answer to a request body or parameters that do not validate: where and what was wrong,
never what the client sent (its values, unknown keys, dict keys or union tags)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, get_args

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

__all__ = ["MAX_ERRORS_SHOWN", "validation_errors"]

MAX_ERRORS_SHOWN = 5
LOCATIONS = frozenset({"body", "path", "query", "header", "cookie"})


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models a type holds directly (itself, or inside a union, list or dict): where the next loc part applies."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _fields(annotation: Any) -> dict[str, Any]:
    """Field name (and alias) -> type, for every model `annotation` holds directly."""
    return {name: field.annotation for model in _models_in(annotation)
            for key, field in model.model_fields.items() for name in (key, field.alias) if name}


def _field_names(annotation: Any, seen: set[type[BaseModel]]) -> set[str]:
    """Every field name a body type declares, nested models included."""
    names: set[str] = set()
    for model in _models_in(annotation):
        if model not in seen:
            seen.add(model)
            for name, field_type in _fields(model).items():
                names |= {name, *_field_names(field_type, seen)}
    return names


def _route_params(route: Any) -> Iterator[Any]:
    """The path, query, header, cookie and body parameters of a route and of its dependencies."""
    pending = [getattr(route, "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is not None:
            yield from (*dependant.path_params, *dependant.query_params, *dependant.header_params,
                        *dependant.cookie_params, *dependant.body_params)
            pending.extend(dependant.dependencies)


def _declared_names(route: Any) -> frozenset[str]:
    """The names a route declares: its parameters and every field of its body, nested models included.

    Any other part of an error's loc was chosen by the client (an unknown key, a dict key, a union tag), so it
    is never answered.
    """
    names, seen = set(LOCATIONS), set[type[BaseModel]]()
    for param in _route_params(route):
        names |= {param.name, param.alias, *_field_names(param.field_info.annotation, seen)}
    body = getattr(route, "body_field", None)
    if body is not None:
        names |= {body.name, body.alias, *_field_names(body.field_info.annotation, seen)}
    return frozenset(names)


def _expected_fields(route: Any, parent: Sequence[Any]) -> list[str]:
    """The fields the body model at `parent` declares: what the client could have sent instead of an unknown key."""
    body = getattr(route, "body_field", None)
    if body is None or list(parent[:1]) != ["body"]:
        return []
    annotation = body.field_info.annotation
    for part in parent[1:]:  # positions and union tags stay on the same type
        annotation = _fields(annotation).get(part, annotation) if isinstance(part, str) else annotation
    return list(dict.fromkeys(field.alias or name for model in _models_in(annotation)
                              for name, field in model.model_fields.items()))


def _quotes_input(error: dict[str, Any], message: str) -> bool:
    """Whether pydantic's message repeats what the client sent: the value itself or the union tag it chose."""
    sent = [error.get("input"), (error.get("ctx") or {}).get("tag")]
    return any(isinstance(value, str | int | float) and str(value) and str(value) in message for value in sent)


def _shown_error(error: dict[str, Any], route: Any, declared: frozenset[str]) -> dict[str, Any]:
    """One error as answered: declared names and positions, and a message that never carries the input."""
    loc, kind, message = list(error.get("loc", ())), str(error.get("type", "")), str(error.get("msg", ""))
    if kind == "extra_forbidden":  # the last part is the client's key: name the parent and what it declares
        loc = loc[:-1]
        expected = _expected_fields(route, loc)
        message = f"unknown field (expected: {', '.join(expected)})" if expected else "unknown field"
    elif kind == "json_invalid":  # the decoder's reason: position, not content
        message = f"{message}: {error.get('ctx', {}).get('error', '')}"
    elif _quotes_input(error, message):
        message = kind.replace("_", " ")
    return {"loc": [part for part in loc if isinstance(part, int) or part in declared],
            "msg": _clip(message, 120), "type": _clip(kind, 40)}


def validation_errors(exc: RequestValidationError, route: Any) -> dict[str, Any]:
    """The first few validation errors of a request to `route`: where and what, never what was sent."""
    errors, declared = exc.errors(), _declared_names(route)
    shown = [_shown_error(error, route, declared) for error in errors[:MAX_ERRORS_SHOWN]]
    return {"detail": shown, **({"more_errors": len(errors) - len(shown)} if len(errors) > len(shown) else {})}
