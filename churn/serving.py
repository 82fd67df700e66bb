"""Request checks for the prediction service, derived from the model's feature schema (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class RequestError(ValueError):
    """A request the service must refuse with a 4xx; the message names the field or id."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServingSchema:
    entity: str
    entity_dtype: str
    features: dict[str, str]
    """Feature name -> dtype (int64, float64, bool, str) in the order the model was fitted with."""
    decision_threshold: float
    _order: list[tuple[str, str]] = field(init=False, repr=False, compare=False)
    """For the fast path of check_features: (name, dtype) in model order."""
    _names: frozenset[str] = field(init=False, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServingSchema:
        return cls(
            d["entity"], d["entity_dtype"], dict(d["features"]), float(d["decision_threshold"])
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_order", list(self.features.items()))
        object.__setattr__(self, "_names", frozenset(self.features))

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "entity_dtype": self.entity_dtype,
            "features": self.features,
            "decision_threshold": self.decision_threshold,
        }


def check_features(schema: ServingSchema, features: Any, where: str = "features") -> list[Any]:
    """The values in model order, or a RequestError naming every missing, unknown or mistyped field.

    Numbers must be finite; categorical values are strings; any feature may be null (the model
    imputes), but every feature must be present, so a client typo never passes silently.
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
    for name, dtype in schema._order:
        value = features[name]
        if value is not None:
            kind = type(value)
            if dtype == "str" or dtype == "bool":
                if kind is not _PYTHON_TYPE[dtype]:
                    return None
            elif (
                kind not in _NUMBER
                or not math.isfinite(value)
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
        problems.append(f"unknown {', '.join(f'{where}.{u}' for u in unknown)}")
    values: list[Any] = []
    for name, dtype in schema.features.items():
        value = features.get(name)
        if value is None:
            values.append(None)
            continue
        if dtype == "str":
            if not isinstance(value, str):
                problems.append(f"{where}.{name}: expected a string, got {type(value).__name__}")
        elif dtype == "bool":
            if not isinstance(value, bool):
                problems.append(
                    f"{where}.{name}: expected true or false, got {type(value).__name__}"
                )
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}.{name}: expected a number, got {type(value).__name__}")
        elif not math.isfinite(value):
            problems.append(f"{where}.{name}: must be finite, got {value}")
        elif dtype == "int64" and isinstance(value, float) and not value.is_integer():
            problems.append(f"{where}.{name}: expected an integer, got {value}")
        values.append(value)
    if problems:
        raise RequestError("; ".join(problems))
    return values


def check_entity_id(schema: ServingSchema, value: Any, where: str) -> Any:
    """Entity ids as the snapshot stores them: ints for int64 entities (numeric strings accepted)."""
    if schema.entity_dtype == "int64":
        if isinstance(value, bool):
            raise RequestError(f"{where}: expected an integer id, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise RequestError(f"{where}: expected an integer id, got {value!r}")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise RequestError(f"{where}: expected a string id, got {value!r}")
    return str(value)


def check_as_of(value: Any, where: str) -> str | None:
    """The time the features describe (ISO 8601, UTC if no offset), as a naive UTC ISO string; None if absent.

    Monitoring joins a prediction to its outcome by customer and this time (default: request time).
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
    except ValueError:
        raise RequestError(f"{where}: not an ISO 8601 date-time: {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.isoformat()


def check_keys(
    body: Any, required: tuple[str, ...], optional: tuple[str, ...], where: str
) -> dict[str, Any]:
    """``body`` as an object with every required key and no key outside required + optional."""
    if not isinstance(body, dict):
        raise RequestError(f"{where}: expected a JSON object with {', '.join(required)}")
    missing = [k for k in required if k not in body]
    unknown = [k for k in body if k not in required and k not in optional]
    problems = [f"missing {_joined(where, missing)}"] if missing else []
    if unknown:
        problems.append(
            f"unknown {_joined(where, unknown)} (expected {', '.join((*required, *optional))})"
        )
    if problems:
        raise RequestError("; ".join(problems))
    return body


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
