"""What a run does: one typed params model per flow, defaults in code, overrides in prefect.yaml."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FeaturesParams(BaseModel):
    """Overrides for the ``features`` flow; anything left unset comes from ``feature_store.yml``."""

    model_config = ConfigDict(extra="forbid")

    start: datetime | None = Field(None, description="first training as-of (default: warm-up after the first event)")
    end: datetime | None = Field(None, description="last training as-of (default: label horizon before the last event)")
    every_days: int | None = Field(None, gt=0, description="days between training as-of dates")
    online_as_of: datetime | None = Field(
        None, description="as-of of the online snapshot (default: midnight after the latest known row)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> FeaturesParams:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self
