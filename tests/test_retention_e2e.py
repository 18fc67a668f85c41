"""Retention through a real `vidgate serve`: its reaper deletes an old result's file and its
Idempotency-Key, leaves recent ones alone, and both surfaces answer for the expired task as
the README says (the task reads, without its video)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, update

from support import GatewayProcess, wait_for_task
from vidgate.db.models import IdempotencyRecord, VideoTask
from vidgate.db.types import utcnow

pytestmark = pytest.mark.e2e

BODY = {"model": "sample", "prompt": "kept a while", "duration": "1", "resolution": "240p"}


def generate(server: GatewayProcess, key: str) -> str:
    response = httpx.post(
        f"{server.base_url}/api/v1/videos/generate",
        json=BODY,
        headers={**server.headers, "Idempotency-Key": key},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"]["task_id"]
    return task_id


def get(server: GatewayProcess, path: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}{path}", headers=server.headers, timeout=10)


def test_retention_expires_old_results_and_keys_only(tmp_path: Path) -> None:
    server = GatewayProcess(
        tmp_path / "gw",
        env={"VIDGATE_RESULT_RETENTION_DAYS": "7", "VIDGATE_REAPER_INTERVAL_S": "0.3"},
    ).start()
    url = server.env.get("VIDGATE_DATABASE_URL") or f"sqlite:///{server.data_dir}/vidgate.db"
    engine = create_engine(url)
    try:
        old_id, recent_id = generate(server, "old-one"), generate(server, "recent-one")
        old = wait_for_task(server, old_id)
        recent = wait_for_task(server, recent_id)
        assert old["status"] == recent["status"] == "completed"
        old_link = old["video_url"]
        assert httpx.get(old_link).status_code == 200
        # Eight days pass for the first task: it ended, and its key was used, long ago.
        long_ago = utcnow() - timedelta(days=8)
        with engine.begin() as conn:
            conn.execute(
                update(VideoTask).where(VideoTask.id == old_id).values(completed_at=long_ago)
            )
            conn.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.task_id == old_id)
                .values(expires_at=long_ago + timedelta(hours=24))
            )

        deadline = time.monotonic() + 15
        data: dict[str, Any] = {}
        while time.monotonic() < deadline:
            data = get(server, f"/api/v1/videos/{old_id}").json()["data"]
            if data["video_url"] is None:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the old result was not expired: {data}")
        # API Mall: still completed and paid for, with no video any more.
        assert (data["status"], data["credits_used"], data["credits_refunded"]) == (
            "completed",
            1,
            0,
        )
        assert data["output"]["resultUrls"] == []
        assert httpx.get(old_link).status_code == 404
        # OpenAI: expires_at says when the content went; the content is gone, said so.
        video = get(server, f"/v1/videos/{old_id}").json()
        with engine.connect() as conn:
            stamped = conn.scalar(select(VideoTask.files_expired_at).where(VideoTask.id == old_id))
        assert stamped is not None
        assert (video["status"], video["expires_at"]) == ("completed", int(stamped.timestamp()))
        content = get(server, f"/v1/videos/{old_id}/content")
        assert content.status_code == 404
        assert content.json()["error"]["code"] == "video_expired"
        assert not list((server.data_dir / "files").glob(f"{old_id}*"))

        # The recent one is untouched: its file, its link, and its expiry a week after it ended.
        assert get(server, f"/api/v1/videos/{recent_id}").json()["data"]["video_url"]
        recent_video = get(server, f"/v1/videos/{recent_id}").json()
        assert recent_video["expires_at"] == recent_video["completed_at"] + 7 * 86400
        assert get(server, f"/v1/videos/{recent_id}/content").status_code == 200
        # Keys: the expired one is forgotten (a new task), the live one still replays.
        with engine.connect() as conn:
            keys = set(conn.scalars(select(IdempotencyRecord.key)))
        assert keys == {"recent-one"}
        assert generate(server, "recent-one") == recent_id
        assert generate(server, "old-one") != old_id
    finally:
        server.stop()
        engine.dispose()
