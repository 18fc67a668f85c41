"""The rules of the OpenAI-style surface beyond create: which tasks a key sees (not another
account's, not deleted ones), the cursor list, delete, remix sources, and the content files,
derived previews included.

A deleted video keeps its task row (billing, the ledger, the API Mall history) with
`deleted_at` stamped; its stored files are removed, and this surface answers 404 for it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vidgate import errors
from vidgate.api.openai.schemas import Variant
from vidgate.db.engine import Database
from vidgate.db.types import iso_ms, utcnow
from vidgate.media.previews import (
    SPRITESHEET_TYPE,
    THUMBNAIL_TYPE,
    PreviewError,
    write_spritesheet,
    write_thumbnail,
)
from vidgate.storage.copies import local_path
from vidgate.tasks import repository, service
from vidgate.tasks.repository import TaskRecord
from vidgate.tasks.states import TaskStatus

if TYPE_CHECKING:
    from vidgate.gateway import Gateway

MAX_PAGE = 100


class VideoNotReady(errors.NotFound):
    """Content asked for before the video completed (or of one that failed)."""

    code = "video_not_ready"
    default_message = "The video has no content yet"


class ContentGone(errors.NotFound):
    """Deleted meanwhile, or removed from the store by hand (or by retention)."""

    default_message = "the video's content is no longer stored"


class VideoExpired(errors.NotFound):
    """Retention deleted the video's files (VIDGATE_RESULT_RETENTION_DAYS); it still reads."""

    code = "video_expired"
    default_message = "The video's content has expired"


class VideoInProgress(errors.VidgateError):
    """A delete of a video still being generated: its state, not the request, is at odds."""

    status_code = 409
    code = "video_in_progress"
    default_message = "The video is still being generated"


class VideoNotCompleted(errors.VidgateError):
    status_code = 409
    code = "video_not_completed"
    default_message = "Only a completed video can be remixed"


@dataclass(frozen=True)
class Preview:
    suffix: str  # of the store key, after the task id
    media_type: str
    write: Callable[[Path, Path], None]


PREVIEWS: dict[str, Preview] = {
    "thumbnail": Preview("thumbnail.webp", THUMBNAIL_TYPE, write_thumbnail),
    "spritesheet": Preview("spritesheet.jpg", SPRITESHEET_TYPE, write_spritesheet),
}
# One derivation per preview at a time in this process; other processes may race, harmlessly
# (the store's writes are atomic, and both derive the same image).
_deriving: dict[str, asyncio.Lock] = {}


def preview_key(task_id: str, variant: str) -> str:
    return f"{task_id}.{PREVIEWS[variant].suffix}"


async def visible_video(db: Database, *, account_id: int, video_id: str) -> TaskRecord:
    """The account's task, unless deleted; NotFound otherwise (another account's too)."""
    try:
        task = await service.get_task(db, account_id=account_id, task_id=video_id)
    except errors.NotFound:
        task = None
    if task is None or task.deleted_at is not None:
        raise errors.NotFound(f"No video found with id '{video_id}'")
    return task


async def list_page(
    db: Database, *, account_id: int, limit: int, ascending: bool, after: str | None
) -> tuple[list[TaskRecord], bool]:
    """Up to `limit` videos past the `after` cursor, and whether more follow."""
    cursor = None
    if after is not None:
        try:
            cursor = await service.get_task(db, account_id=account_id, task_id=after)
        except errors.NotFound:
            raise errors.NotFound(f"after: no video '{after}' in this account") from None
    rows = await db.backend.run_read(
        lambda conn: repository.video_page(
            conn, account_id=account_id, limit=limit + 1, ascending=ascending, after=cursor
        )
    )
    return rows[:limit], len(rows) > limit


async def remix_source(db: Database, *, account_id: int, video_id: str) -> TaskRecord:
    source = await visible_video(db, account_id=account_id, video_id=video_id)
    if source.status != TaskStatus.COMPLETED:
        raise VideoNotCompleted(
            f"video '{video_id}' has not completed; only a completed video can be remixed"
        )
    return source


async def delete_video(gateway: Gateway, *, account_id: int, video_id: str) -> None:
    task = await visible_video(gateway.db, account_id=account_id, video_id=video_id)
    if not task.is_terminal:
        raise VideoInProgress(
            f"video '{video_id}' is still being generated; a video can be deleted once it "
            "has completed or failed"
        )
    now = utcnow()
    marked = await gateway.db.backend.run_write(
        lambda conn: repository.mark_deleted(conn, task_id=task.id, account_id=account_id, at=now)
    )
    if not marked:  # a concurrent delete won
        raise errors.NotFound(f"No video found with id '{video_id}'")
    # The row says deleted first: a crash now leaves files nobody can reach, never a video
    # that reads as present without its files.
    keys = [preview_key(task.id, variant) for variant in PREVIEWS]
    for key in [task.file_key, *keys]:
        if key is not None:
            await gateway.store.delete(key)
    gateway.rendered_tasks.forget(task.id)


async def content_key(gateway: Gateway, task: TaskRecord, variant: Variant) -> str:
    """The store key of a variant of a completed video, stored when this returns; a preview is
    derived from the video on first request and stored beside it."""
    if task.status != TaskStatus.COMPLETED or task.file_key is None:
        state = "failed" if task.is_terminal else "is not ready yet"
        raise VideoNotReady(f"video '{task.id}' {state}: it has no content")
    if task.files_expired_at is not None:
        raise VideoExpired(
            f"video '{task.id}' expired at {iso_ms(task.files_expired_at)}: its content is no "
            "longer stored (the gateway's retention period)"
        )
    store = gateway.store
    if variant == "video":
        if not await store.exists(task.file_key):
            raise ContentGone()
        return task.file_key
    key = preview_key(task.id, variant)
    if await store.exists(key):
        return key
    lock = _deriving.setdefault(key, asyncio.Lock())
    try:
        async with lock:
            if not await store.exists(key):  # not made while we waited
                await _derive(gateway, task.file_key, key, PREVIEWS[variant])
    finally:
        _deriving.pop(key, None)
    return key


async def _derive(gateway: Gateway, video_key: str, key: str, preview: Preview) -> None:
    work_dir = gateway.settings.data_dir / "work" / "previews"
    target = work_dir / f"{secrets.token_hex(8)}-{key}"
    try:
        await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
        # PyAV seeks in the file: a store elsewhere lends a local copy for the derivation.
        async with local_path(gateway.store, video_key, work_dir=work_dir) as video:
            if video is None:
                raise ContentGone()
            await asyncio.to_thread(preview.write, video, target)
        await gateway.store.put_file(key, target)
    except PreviewError as error:
        raise errors.InternalError(f"the {preview.suffix} could not be made: {error}") from error
    finally:
        await asyncio.to_thread(target.unlink, missing_ok=True)
