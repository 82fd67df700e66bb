"""In-memory online feature lookup over a materialised snapshot (one row per entity)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd


class OnlineFeatures:
    """Answers the latest feature vector for entity ids from memory.

    Built once from the online snapshot frame; a lookup is a dict hit plus one index per column.
    """

    def __init__(self, snapshot: pd.DataFrame, entity: str, feature_names: Sequence[str]):
        missing = [c for c in (entity, *feature_names) if c not in snapshot.columns]
        if missing:
            raise ValueError(f"online snapshot lacks columns {missing}")
        ids = snapshot[entity].tolist()
        if len(set(ids)) != len(ids):
            raise ValueError(f"online snapshot has duplicate {entity} values")
        self.entity = entity
        self.feature_names = list(feature_names)
        self._row = {key: i for i, key in enumerate(ids)}
        # object arrays so a lookup hands back plain Python values (None for missing)
        self._columns = [
            np.array([None if pd.isna(v) else v for v in snapshot[name].tolist()], dtype=object)
            for name in self.feature_names
        ]

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, entity_id: Any) -> bool:
        return entity_id in self._row

    def get(self, entity_id: Any) -> dict[str, Any] | None:
        """Feature values for one id, or None when the id is not in the snapshot."""
        row = self._row.get(entity_id)
        if row is None:
            return None
        return {name: col[row] for name, col in zip(self.feature_names, self._columns)}

    def lookup(self, entity_ids: Iterable[Any]) -> tuple[dict[Any, dict[str, Any]], list[Any]]:
        """Features for every known id, and the ids that are unknown (in request order)."""
        found, unknown = {}, []
        for entity_id in entity_ids:
            values = self.get(entity_id)
            if values is None:
                unknown.append(entity_id)
            else:
                found[entity_id] = values
        return found, unknown
