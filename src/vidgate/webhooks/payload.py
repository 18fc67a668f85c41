"""The body of a delivery: `{"type", "timestamp", "data"}`, data being the task as the status
endpoint (GET /api/v1/videos/{id}) shows it. Rendered once, at the first try, and stored: every
retry sends the same bytes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from vidgate.db.types import iso_ms
from vidgate.tasks.repository import TaskRecord

# The task as JSON text, rendered by the API surface's presenter (given by the assembly, so
# this package does not depend on the API).
TaskRenderer = Callable[[TaskRecord], str]


def render(*, event_type: str, at: datetime, task_json: str) -> str:
    """`at`: when the task ended (the delivery's creation), in the contract's ISO format."""
    head = json.dumps({"type": event_type, "timestamp": iso_ms(at)}, separators=(",", ":"))
    return f'{head[:-1]},"data":{task_json}}}'
