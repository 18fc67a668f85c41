"""Helpers shared by the tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass

from vidgate.billing import service as billing
from vidgate.db.engine import Database
from vidgate.keys import service as keys


@dataclass(frozen=True)
class Caller:
    account_id: int
    key_id: int
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def make_caller(db: Database, *, credits: int = 100, title: str = "test") -> Caller:
    async with db.write() as session:
        account = await billing.create_account(session, name=title, credits=credits)
        key, plaintext = await keys.create_key(session, account_id=account.id, title=title)
    return Caller(account_id=account.id, key_id=key.id, api_key=plaintext)
