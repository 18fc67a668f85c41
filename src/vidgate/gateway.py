"""The assembled gateway: settings plus the long-lived components built from them."""

from __future__ import annotations

from dataclasses import dataclass

from vidgate.db.engine import Database, open_database
from vidgate.settings import Settings


@dataclass
class Gateway:
    settings: Settings
    db: Database

    @classmethod
    def build(cls, settings: Settings) -> Gateway:
        settings.ensure_data_dir()
        return cls(settings=settings, db=open_database(settings.resolved_database_url))

    async def close(self) -> None:
        await self.db.dispose()
