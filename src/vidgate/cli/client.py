"""Client commands that talk HTTP to a running gateway, through the sync SDK.

Messages and progress go to stderr; stdout gets only what scripts want to capture (the task id,
the downloaded file's path, or the task's JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vidgate.client import (
    APIConnectionError,
    APIStatusError,
    MissingAPIKeyError,
    OptionValue,
    Task,
    VidgateClient,
    VidgateError,
)
from vidgate.client._base import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL

# soft_wrap: captured (non-TTY) output keeps one message per line.
err = Console(stderr=True, highlight=False, soft_wrap=True)

BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        envvar=BASE_URL_ENV,
        show_envvar=True,
        help=f"Gateway URL (default: {DEFAULT_BASE_URL})",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar=API_KEY_ENV, show_envvar=True, help="API key (sk-...)"),
]


def register(app: typer.Typer) -> None:
    app.command()(generate)
    app.command()(status)
    app.command()(cancel)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


@contextmanager
def _gateway(base_url: str | None, api_key: str | None) -> Iterator[VidgateClient]:
    """A client whose errors end the command with a clear message and no traceback."""
    client = VidgateClient(base_url=base_url, api_key=api_key)
    where = f"(set it with --base-url or {BASE_URL_ENV})"
    url = urlsplit(client.base_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise _fail(
            f"gateway URL {client.base_url!r} is not an http(s) URL, "
            f"e.g. {DEFAULT_BASE_URL} {where}",
            code=2,
        )
    try:
        with client:
            yield client
    except MissingAPIKeyError:
        raise _fail(f"no API key: pass --api-key or set {API_KEY_ENV}", code=2) from None
    except APIConnectionError as exc:
        raise _fail(
            f"{exc.message}; is the gateway running at {client.base_url}? {where}"
        ) from None
    except APIStatusError as exc:
        if exc.code is None:  # no API error envelope: something else answers at that address
            raise _fail(
                f"{client.base_url} answered HTTP {exc.status_code} without an API error: "
                f"is it a vidgate gateway? {where}"
            ) from None
        raise _fail(f"{exc.code}: {exc.message} (HTTP {exc.status_code})") from None
    except VidgateError as exc:
        raise _fail(exc.message) from None


def _check_output(output: Path | None) -> None:
    """Refuse an output path that cannot be written before a task is paid for, not after it
    has rendered. The download makes missing folders, so the nearest existing one decides."""
    if output is not None and output.is_dir():
        raise _fail(f"--output: {output} is a directory; name the file to write", code=2)
    folder = (output or Path("video.mp4")).absolute().parent  # default: TASK_ID.mp4 in .
    while not folder.exists():
        folder = folder.parent
    problem = (
        "is not a directory"
        if not folder.is_dir()
        else ("is not writable" if not os.access(folder, os.W_OK | os.X_OK) else None)
    )
    if problem and output is not None:
        raise _fail(f"--output: cannot write {output}: {folder} {problem}", code=2)
    if problem:
        raise _fail(f"cannot save the video: {folder} {problem}; choose a file with --output", 2)


def generate(
    prompt: Annotated[str, typer.Argument(help="What the video should show")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model id (see /api/v1/models)")] = (
        "sora2"
    ),
    task_type: Annotated[
        str | None,
        typer.Option("--type", help="text-to-video, image-to-video or video-to-video"),
    ] = None,
    aspect_ratio: Annotated[str | None, typer.Option(help="landscape, portrait or square")] = None,
    n_frames: Annotated[str | None, typer.Option(help="Sora clip length: 10 or 15")] = None,
    duration: Annotated[str | None, typer.Option(help="Clip length in seconds")] = None,
    resolution: Annotated[str | None, typer.Option(help="e.g. 240p, 720p")] = None,
    image: Annotated[
        list[str] | None, typer.Option("--image", help="Reference image URL (repeatable)")
    ] = None,
    remove_watermark: Annotated[
        bool, typer.Option("--remove-watermark", help="Ask for no watermark")
    ] = False,
    callback_url: Annotated[str | None, typer.Option(help="URL to call when the task ends")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            metavar="NAME=VALUE",
            help=(
                "A model option (repeatable), e.g. --option seed=42; the value is read as JSON "
                "when it is an integer or true/false (quote it, '\"42\"', to send a string)"
            ),
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Retry-safe create: same key, same task")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the video and download it")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="With --wait: where to save (default: TASK_ID.mp4)"),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after this many seconds")
    ] = None,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create a video task; prints its id (alone on the last line of stdout).

    With --wait: follow its progress, then download the MP4 (exit 1 if the task fails).
    """
    if output is not None and not wait:
        raise _fail("--output needs --wait (nothing is downloaded without it)", code=2)
    if wait:
        _check_output(output)
    shortcuts: dict[str, OptionValue | None] = {
        "aspect_ratio": aspect_ratio,
        "n_frames": n_frames,
        "duration": duration,
        "resolution": resolution,
        "remove_watermark": remove_watermark or None,
    }
    options = _options(option or [], shortcuts)
    with _gateway(base_url, api_key) as client:
        try:
            created = client.videos.generate(
                model=model,
                prompt=prompt,
                idempotency_key=idempotency_key,
                type=task_type,
                image_urls=image or None,
                callback_url=callback_url,
                options=options,
            )
        except ValueError as exc:  # refused by the SDK before sending, e.g. --option prompt=x
            raise _fail(str(exc), code=2) from None
        err.print(
            f"created task {created.task_id} ({created.model}): "
            f"{_credits(created.credits_used)} used, {_credits(created.remaining_credits)} left"
        )
        if not wait:
            print(created.task_id)
            return
        try:
            task = _follow(client, created.task_id, timeout=timeout)
        except KeyboardInterrupt:
            err.print(
                f"interrupted; the task goes on: `vidgate status {created.task_id}` to check "
                f"it, `vidgate cancel {created.task_id}` to stop it"
            )
            raise typer.Exit(130) from None
        if task.status != "completed":
            raise _fail(f"task {task.task_id} failed: {task.error_message or 'no reason given'}")
        target = output or Path(f"{task.task_id}.mp4")
        _download(client, task, target)
        err.print(f"saved {target}")
        print(target)


def _option_value(text: str) -> OptionValue:
    """An integer or true/false as such, a JSON string literal as its text, anything else as
    written (so `style=film` needs no quotes)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, bool | int | str) else text


def _options(given: list[str], shortcuts: dict[str, OptionValue | None]) -> dict[str, OptionValue]:
    """The --option NAME=VALUE pairs, with the named option flags (--duration ...) among them."""
    options: dict[str, OptionValue] = {}
    for item in given:
        name, equals, text = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise _fail(f"--option wants NAME=VALUE (got {item!r})", code=2)
        if name in options:
            raise _fail(f"--option {name} is given twice", code=2)
        options[name] = _option_value(text)
    for name, value in shortcuts.items():
        if value is None:
            continue
        if name in options and str(options[name]) != str(value):
            flag = f"--{name.replace('_', '-')}"
            raise _fail(f"{flag} and --option {name} disagree; give one of them", code=2)
        options[name] = value
    return options


def _credits(amount: int) -> str:
    return f"{amount} credit{'' if amount == 1 else 's'}"


def _follow(client: VidgateClient, task_id: str, *, timeout: float | None) -> Task:
    """Wait for the task, with a live progress bar on a terminal and plain lines elsewhere.
    The SDK follows the gateway's event stream, or polls a gateway that has none."""
    if not err.is_terminal:
        seen: set[tuple[str, int]] = set()

        def log(task: Task) -> None:
            if (task.status, task.progress) not in seen:
                seen.add((task.status, task.progress))
                err.print(f"{task.task_id}: {task.status} {task.progress}%")

        return client.videos.wait(task_id, timeout=timeout, on_update=log)

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as progress:
        bar = progress.add_task(f"{task_id} pending", total=100)

        def show(task: Task) -> None:
            progress.update(bar, description=f"{task_id} {task.status}", completed=task.progress)

        return client.videos.wait(task_id, timeout=timeout, on_update=show)


def _download(client: VidgateClient, task: Task, target: Path) -> None:
    try:
        _download_with_progress(client, task, target)
    except OSError as exc:  # e.g. the disk filled up, or a folder the check could not foresee
        raise _fail(
            f"task {task.task_id} completed, but {target} could not be written: "
            f"{exc.strerror or exc}. Download it again with "
            f"`vidgate status {task.task_id}` (video_url)"
        ) from None


def _download_with_progress(client: VidgateClient, task: Task, target: Path) -> None:
    if not err.is_terminal:
        client.videos.download(task, target)
        return
    columns = (
        TextColumn("downloading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as progress:
        bar = progress.add_task("download", total=None)

        def show(done: int, total: int | None) -> None:
            progress.update(bar, completed=done, total=total)

        client.videos.download(task, target, on_progress=show)


_STATUS_FIELDS = (
    "task_id",
    "model",
    "type",
    "status",
    "progress",
    "video_url",
    "error_code",
    "error_message",
    "credits_used",
    "credits_refunded",
    "created_at",
    "updated_at",
    "completed_at",
)


JsonOption = Annotated[bool, typer.Option("--json", help="Print the task as JSON")]


def status(
    task_id: Annotated[str, typer.Argument(help="Task id (vid_...)")],
    as_json: JsonOption = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the task until it ends (exit 1 if it fails)")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after this many seconds")
    ] = None,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show a task's status, progress, cost and video URL."""
    if timeout is not None and not wait:
        raise _fail("--timeout needs --wait", code=2)
    with _gateway(base_url, api_key) as client:
        if not wait:
            task = client.videos.get(task_id)
        else:
            try:
                task = _follow(client, task_id, timeout=timeout)
            except KeyboardInterrupt:
                err.print(f"interrupted; the task goes on: `vidgate cancel {task_id}` to stop it")
                raise typer.Exit(130) from None
    _print_task(task, as_json=as_json)
    if wait and task.status != "completed":
        raise typer.Exit(1)


def cancel(
    task_id: Annotated[str, typer.Argument(help="Task id (vid_...)")],
    as_json: JsonOption = False,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Cancel a pending or processing task; prints it as it ended (refunded unless an upstream
    had accepted it and keeps the credits). Exit 1 if it had ended already."""
    with _gateway(base_url, api_key) as client:
        task = client.videos.cancel(task_id)
    err.print(
        f"cancelled task {task.task_id}: {_credits(task.credits_refunded)} of "
        f"{_credits(task.credits_used)} refunded"
    )
    _print_task(task, as_json=as_json)


def _print_task(task: Task, *, as_json: bool) -> None:
    fields = task.model_dump(mode="json", by_alias=True)
    if as_json:
        print(json.dumps(fields, indent=2))
        return
    width = max(len(name) for name in _STATUS_FIELDS)
    for name in _STATUS_FIELDS:
        value = fields.get(name)
        if name == "progress":
            value = f"{value}%"
        print(f"{name:<{width}}  {'-' if value is None else value}")
