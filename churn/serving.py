"""Request checks for the prediction service, derived from the model's feature schema (pure).

Every value a client sends is checked before it is scored or logged: types by the feature's dtype,
numbers finite and within the feature's declared ``min``/``max`` (the view .yml) and a magnitude
bound, integers and ids within int64, strings and ids of bounded length, times within years
1900-2199. A problem is a ``RequestError`` naming the field; a rejected value is echoed only as a
short prefix.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

INT64 = 2**63
MAX_MAGNITUDE = 1e12
"""A number beyond this is no feature value any model here was trained on (configurable per schema)."""
MAX_TEXT = 256
"""Longest string value or id accepted."""
_DIGITS = re.compile(r"-?[0-9]{1,19}")


class RequestError(ValueError):
    """A request the service must refuse with a 4xx; the message names the field or id."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def shown(value: Any, limit: int = 40) -> str:
    """A value as it may be echoed back or logged: its repr, cut to ``limit`` characters."""
    text = (
        repr(value)
        if not isinstance(value, int) or abs(value) < 10**30
        else f"<an integer of {len(str(abs(value)))} digits>"
    )
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class ServingSchema:
    entity: str
    entity_dtype: str
    features: dict[str, str]
    """Feature name -> dtype (int64, float64, bool, str) in the order the model was fitted with."""
    decision_threshold: float
    bounds: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    """Feature name -> the (min, max) its view declares; a value outside is refused."""
    max_magnitude: float = MAX_MAGNITUDE
    _order: list[tuple[str, str, float, float]] = field(init=False, repr=False, compare=False)
    """For the fast path of check_features: (name, dtype, low, high) in model order."""
    _names: frozenset[str] = field(init=False, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServingSchema:
        bounds = {name: (low, high) for name, (low, high) in (d.get("bounds") or {}).items()}
        return cls(
            d["entity"],
            d["entity_dtype"],
            dict(d["features"]),
            float(d["decision_threshold"]),
            bounds,
        )

    def __post_init__(self) -> None:
        order = []
        for name, dtype in self.features.items():
            low, high = self.bounds.get(name, (None, None))
            order.append(
                (
                    name,
                    dtype,
                    max(-self.max_magnitude, low if low is not None else -math.inf),
                    min(self.max_magnitude, high if high is not None else math.inf),
                )
            )
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_names", frozenset(self.features))

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "entity_dtype": self.entity_dtype,
            "features": self.features,
            "decision_threshold": self.decision_threshold,
            "bounds": {k: list(v) for k, v in self.bounds.items()},
        }


def check_features(schema: ServingSchema, features: Any, where: str = "features") -> list[Any]:
    """The values in model order, or a RequestError naming every missing, unknown or mistyped field.

    Numbers must be finite and within the feature's bounds; categorical values are strings; any
    feature may be null (the model imputes), but every feature must be present, so a client typo
    never passes silently.
    """
    if not isinstance(features, dict):
        raise RequestError(f"{where}: expected an object of feature values")
    values = _well_formed(schema, features)
    return values if values is not None else _explain(schema, features, where)


_NUMBER = (int, float)
_PYTHON_TYPE = {"str": str, "bool": bool}


def _well_formed(schema: ServingSchema, features: dict[str, Any]) -> list[Any] | None:
    """The values in model order when every check passes, else None (the common case, kept cheap)."""
    if len(features) != len(schema._names) or not schema._names.issuperset(features):
        return None
    values = []
    for name, dtype, low, high in schema._order:
        value = features[name]
        if value is not None:
            kind = type(value)
            if dtype == "str" or dtype == "bool":
                if kind is not _PYTHON_TYPE[dtype] or (kind is str and len(value) > MAX_TEXT):
                    return None
            elif (
                kind not in _NUMBER
                or not low <= value <= high  # also False for NaN
                or (dtype == "int64" and kind is float and not value.is_integer())
            ):
                return None
        values.append(value)
    return values


def _explain(schema: ServingSchema, features: dict[str, Any], where: str) -> list[Any]:
    """Every problem with ``features`` in one RequestError (or the values, for subclassed types that pass)."""
    problems = []
    missing = [name for name in schema.features if name not in features]
    unknown = [name for name in features if name not in schema.features]
    if missing:
        problems.append(f"missing {', '.join(f'{where}.{m}' for m in missing)}")
    if unknown:
        problems.append(f"unknown {', '.join(f'{where}.{_cut(u)}' for u in unknown[:10])}")
    values: list[Any] = []
    for name, dtype, low, high in schema._order:
        value = features.get(name)
        values.append(value)
        if value is None:
            continue
        problem = _value_problem(value, dtype, low, high)
        if problem:
            problems.append(f"{where}.{name}: {problem}")
    if problems:
        raise RequestError("; ".join(problems))
    return values


def _value_problem(value: Any, dtype: str, low: float, high: float) -> str | None:
    if dtype == "str":
        if not isinstance(value, str):
            return f"expected a string, got {type(value).__name__}"
        return f"longer than {MAX_TEXT} characters" if len(value) > MAX_TEXT else None
    if dtype == "bool":
        return (
            None
            if isinstance(value, bool)
            else f"expected true or false, got {type(value).__name__}"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number, got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be finite, got {value}"
    if dtype == "int64" and isinstance(value, float) and not value.is_integer():
        return f"expected an integer, got {shown(value)}"
    if not low <= value <= high:
        return f"{shown(value)} is outside [{low:g}, {high:g}]"
    return None


def check_entity_id(schema: ServingSchema, value: Any, where: str) -> Any:
    """Entity ids as the snapshot stores them: int64 for int64 entities (decimal strings of ASCII
    digits accepted), else strings (integers accepted) of at most MAX_TEXT characters."""
    if schema.entity_dtype == "int64":
        if isinstance(value, int) and not isinstance(value, bool) and -INT64 <= value < INT64:
            return value
        if (
            isinstance(value, str)
            and _DIGITS.fullmatch(value.strip())
            and -INT64 <= int(value) < INT64
        ):
            return int(value)
        raise RequestError(f"{where}: expected an integer id (64-bit), got {shown(value)}")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RequestError(f"{where}: expected a string id, got {shown(value)}")
    text = value if isinstance(value, str) else str(value) if abs(value) < 10**30 else None
    if text is None or len(text) > MAX_TEXT:
        raise RequestError(
            f"{where}: an id may have at most {MAX_TEXT} characters, got {shown(value)}"
        )
    return text


def check_as_of(value: Any, where: str) -> str | None:
    """The time the features describe (ISO 8601, UTC if no offset), as a naive UTC ISO string; None if absent.

    Monitoring joins a prediction to its outcome by entity and this time (default: request time).
    """
    if value is None:
        return None
    from datetime import UTC, datetime

    if not isinstance(value, str):
        raise RequestError(
            f"{where}: expected an ISO 8601 date-time string, got {type(value).__name__}"
        )
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise RequestError(f"{where}: not an ISO 8601 date-time: {shown(value)}") from None
    if not 1900 <= parsed.year < 2200:
        raise RequestError(f"{where}: {shown(value)} is outside the years 1900-2199")
    return parsed.isoformat()


def check_keys(
    body: Any, required: tuple[str, ...], optional: tuple[str, ...], where: str
) -> dict[str, Any]:
    """``body`` as an object with every required key and no key outside required + optional."""
    if not isinstance(body, dict):
        raise RequestError(f"{where or 'body'}: expected a JSON object with {', '.join(required)}")
    missing = [k for k in required if k not in body]
    unknown = [k for k in body if k not in required and k not in optional]
    problems = [f"missing {_joined(where, missing)}"] if missing else []
    if unknown:
        problems.append(
            f"unknown {_joined(where, [_cut(k) for k in unknown[:10]])} "
            f"(expected {', '.join((*required, *optional))})"
        )
    if problems:
        raise RequestError("; ".join(problems))
    return body


def _cut(key: str, limit: int = 60) -> str:
    """A key as it may be echoed back: cut to ``limit`` characters."""
    return key if len(key) <= limit else key[:limit] + "..."


def _joined(where: str, keys: list[str]) -> str:
    return ", ".join(f"{where}.{k}" if where else k for k in keys)


def check_row(schema: ServingSchema, row: Any, where: str) -> tuple[Any, list[Any], str | None]:
    """One scoring row ``{<entity>, features[, as_of]}``: the id, the values in model order, the as-of."""
    row = check_keys(row, (schema.entity, "features"), ("as_of",), where)
    prefix = f"{where}." if where else ""
    entity_id = check_entity_id(schema, row[schema.entity], prefix + schema.entity)
    values = check_features(schema, row["features"], prefix + "features")
    return entity_id, values, check_as_of(row.get("as_of"), prefix + "as_of")


def check_count(items: Any, where: str, limit: int) -> list[Any]:
    """A non-empty list of at most ``limit`` items (over it: 413)."""
    if not isinstance(items, list):
        raise RequestError(f"{where}: expected a list")
    if not items:
        raise RequestError(f"{where}: empty list")
    if len(items) > limit:
        raise RequestError(f"{where}: {len(items)} items exceed the limit of {limit}", status=413)
    return items
