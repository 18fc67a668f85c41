"""The official openai SDK against a real `vidgate serve`, with only base_url changed: create
and poll, list, download (video and previews), remix, delete, image-to-video by upload."""

from __future__ import annotations

import io
from pathlib import Path

import openai
import pytest
from PIL import Image

from openai_surface.helpers import balance, mean_rgb, new_account_key, red_png, sdk, stored_files
from support import GatewayProcess, decode_mp4

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning"),
]


def test_create_and_poll_then_download_the_video(
    server: GatewayProcess, client: openai.OpenAI, tmp_path: Path
) -> None:
    before = balance(server)
    video = client.videos.create_and_poll(prompt="a fox in the snow", size="1280x720", seconds="4")
    assert video.status == "completed", video
    assert (video.object, video.model, video.progress) == ("video", "sora-2", 100)
    assert (video.size, video.seconds, video.prompt) == ("1280x720", "4", "a fox in the snow")
    assert video.error is None
    assert video.remixed_from_video_id is None
    assert video.completed_at is not None
    assert video.completed_at >= video.created_at
    assert balance(server) == before - 12  # sora-2: 3 credits a second, debited once

    content = client.videos.download_content(video.id)
    assert content.response.headers["content-type"] == "video/mp4"
    path = tmp_path / "video.mp4"
    content.write_to_file(path)
    decoded = decode_mp4(path)
    assert (decoded["codec"], decoded["width"], decoded["height"]) == ("h264", 1280, 720)
    assert abs(decoded["duration_s"] - 4.0) < 0.1
    assert len(decoded["frames"]) == 4 * 24


def test_thumbnail_and_spritesheet_are_made_once_and_stored(
    server: GatewayProcess, client: openai.OpenAI
) -> None:
    video = client.videos.create_and_poll(prompt="a portrait clip", seconds="4")
    assert video.size == "720x1280"  # the protocol's default size

    thumbnail = client.videos.download_content(video.id, variant="thumbnail")
    assert thumbnail.response.headers["content-type"] == "image/webp"
    image = Image.open(io.BytesIO(thumbnail.content))
    assert (image.format, image.size) == ("WEBP", (720, 1280))

    sheet = client.videos.download_content(video.id, variant="spritesheet")
    assert sheet.response.headers["content-type"] == "image/jpeg"
    grid = Image.open(io.BytesIO(sheet.content))
    assert grid.format == "JPEG"
    assert grid.size == (4 * 256, 4 * round(256 * 1280 / 720))

    files = stored_files(server)
    assert {f"{video.id}.thumbnail.webp", f"{video.id}.spritesheet.jpg"} <= files
    again = client.videos.download_content(video.id, variant="thumbnail")
    assert again.content == thumbnail.content


def test_list_pages_through_the_accounts_videos(client: openai.OpenAI) -> None:
    created = [client.videos.create(prompt=f"page item {n}", seconds="4").id for n in range(3)]

    first = client.videos.list(limit=2, order="desc")
    assert [video.id for video in first.data] == created[::-1][:2]
    assert first.has_more is True
    assert first.last_id == created[1]
    following = client.videos.list(limit=2, order="desc", after=first.last_id)
    assert following.data[0].id == created[0]

    oldest_first = client.videos.list(limit=2, order="asc")
    ids = [video.id for video in oldest_first]  # the SDK follows after= through every page
    assert ids.index(created[0]) < ids.index(created[1]) < ids.index(created[2])
    assert len(ids) == len(set(ids))


def test_remix_makes_a_new_video_of_the_same_shape_charged_as_a_create(
    server: GatewayProcess, client: openai.OpenAI
) -> None:
    source = client.videos.create_and_poll(prompt="a lighthouse", size="1280x720", seconds="8")
    assert source.status == "completed"
    before = balance(server)
    remix = client.videos.remix(source.id, prompt="the lighthouse at night")
    assert remix.id != source.id
    assert remix.remixed_from_video_id == source.id
    assert (remix.model, remix.size, remix.seconds) == ("sora-2", "1280x720", "8")
    assert remix.status == "queued"
    assert balance(server) == before - 24
    done = client.videos.poll(remix.id)
    assert done.status == "completed"
    assert done.prompt == "the lighthouse at night"
    assert done.remixed_from_video_id == source.id


def test_remix_of_a_video_still_in_flight_is_a_conflict(client: openai.OpenAI) -> None:
    busy = client.videos.create(prompt="a long one [slow:3]", seconds="4")
    with pytest.raises(openai.ConflictError) as refused:
        client.videos.remix(busy.id, prompt="too early")
    assert refused.value.code == "video_not_completed"


def test_delete_removes_the_files_and_hides_the_video(
    server: GatewayProcess, client: openai.OpenAI
) -> None:
    video = client.videos.create_and_poll(prompt="to be deleted", seconds="4")
    client.videos.download_content(video.id, variant="thumbnail")
    before = balance(server)

    deleted = client.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    assert not {name for name in stored_files(server) if name.startswith(video.id)}
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.delete(video.id)
    assert video.id not in [listed.id for listed in client.videos.list(limit=100)]
    assert balance(server) == before  # deleting is not a refund


def test_delete_of_a_video_in_flight_is_a_conflict(client: openai.OpenAI) -> None:
    busy = client.videos.create(prompt="still rendering [slow:3]", seconds="4")
    with pytest.raises(openai.ConflictError) as refused:
        client.videos.delete(busy.id)
    assert refused.value.code == "video_in_progress"
    assert client.videos.retrieve(busy.id).id == busy.id


def test_an_uploaded_input_reference_starts_the_video(
    server: GatewayProcess, client: openai.OpenAI, tmp_path: Path
) -> None:
    video = client.videos.create_and_poll(
        prompt="make it move",
        input_reference=("red.png", red_png(), "image/png"),
        size="1280x720",
        seconds="4",
    )
    assert video.status == "completed", video
    path = tmp_path / "i2v.mp4"
    client.videos.download_content(video.id).write_to_file(path)
    frames = decode_mp4(path)["frames"]
    red, green, blue = mean_rgb(frames[len(frames) // 2])
    assert red > 150, (red, green, blue)
    assert max(green, blue) < 90, (red, green, blue)
    # The upload went to the store under a name of its content; the worker read it from there.
    assert any(name.startswith("input_") and name.endswith(".png") for name in stored_files(server))


def test_typed_errors(server: GatewayProcess, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad_size:
        client.videos.create(prompt="p", size="640x480")  # type: ignore[arg-type]
    assert bad_size.value.param == "size"
    assert bad_size.value.type == "invalid_request_error"
    assert "720x1280" in bad_size.value.message

    with pytest.raises(openai.BadRequestError) as bad_model:
        client.videos.create(prompt="p", model="no-such-model")
    assert bad_model.value.param == "model"

    stranger = sdk(server, api_key="sk-" + "0" * 48)
    with pytest.raises(openai.AuthenticationError) as unknown_key:
        stranger.videos.list()
    assert unknown_key.value.type == "authentication_error"
    assert unknown_key.value.code == "invalid_api_key"

    busy = client.videos.create(prompt="not there yet [slow:3]", seconds="4")
    with pytest.raises(openai.NotFoundError) as not_ready:
        client.videos.download_content(busy.id)
    assert not_ready.value.code == "video_not_ready"


def test_another_accounts_video_is_not_found(server: GatewayProcess, client: openai.OpenAI) -> None:
    theirs = client.videos.create_and_poll(prompt="mine alone", seconds="4")
    with sdk(server, api_key=new_account_key(server)) as other:
        for attempt in (
            lambda: other.videos.retrieve(theirs.id),
            lambda: other.videos.download_content(theirs.id),
            lambda: other.videos.remix(theirs.id, prompt="steal"),
            lambda: other.videos.delete(theirs.id),
        ):
            with pytest.raises(openai.NotFoundError) as hidden:
                attempt()
            assert hidden.value.type == "not_found_error"
        assert theirs.id not in [video.id for video in other.videos.list()]
    assert client.videos.retrieve(theirs.id).status == "completed"
