"""How a benchmark script reports: one JSON object on standard output, and the same in a file on request."""

from __future__ import annotations

import json
from typing import Any

from tg_dfer.io.atomic import write_text_atomic


def emit(result: dict[str, Any], json_path: str | None) -> None:
    text = json.dumps(result, indent=1)
    print(text)
    if json_path:
        write_text_atomic(json_path, text + "\n")
