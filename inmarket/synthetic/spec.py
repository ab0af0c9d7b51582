"""The generator's settings (``WorldSpec``): a module of its own, so that the chunk every stage
fills and the world that runs the stages both read it without importing each other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WorldSpec(BaseModel):
    """The generator's settings, validated: the one definition the CLI and config files share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: int = Field(5000, ge=1, description="number of accounts")
    seed: int = Field(7, description="random seed; same seed, same bytes")
    start: datetime = Field(
        datetime(2024, 7, 1, tzinfo=UTC), description="first moment of history; naive means UTC"
    )
    days: int = Field(730, ge=120, description="length of history in days")
    dirty: bool = Field(
        False,
        description="inject realistic faults: duplicates, unknown accounts, bad or late timestamps",
    )
    in_market_quarterly: float = Field(
        0.05, gt=0, lt=0.5, description="share of non-customers in-market in a given quarter"
    )

    @field_validator("start")
    @classmethod
    def _start_in_utc(cls, start: datetime) -> datetime:
        """Read a naive start (a date from the command line) as UTC, and convert an aware one."""
        return start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The end of history, which is also when the tables are taken to be extracted."""
        return self.start + timedelta(days=self.days)
