"""JSON lines: one object per finished host, for scripts."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from typing import Any

from hostbatch.models import HostResult


def _text_or_base64(name: str, data: bytes) -> dict[str, Any]:
    """UTF-8 output as text; anything else as base64 so no byte is lost."""
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {name: None, f"{name}_base64": base64.b64encode(data).decode()}


def result_record(result: HostResult) -> dict[str, Any]:
    return {
        "host": result.host,
        "status": result.status.name.lower(),
        "exit_status": result.exit_status,
        **_text_or_base64("stdout", result.stdout),
        **_text_or_base64("stderr", result.stderr),
        "error": result.error,
        "started": result.started,
        "ended": result.ended,
        "elapsed": round(result.elapsed, 6),
        "truncated": result.truncated,
        **({"outputs": [asdict(o) for o in result.outputs]} if result.outputs else {}),
        **(
            {"files": result.files, "bytes_transferred": result.bytes_transferred}
            if result.files
            else {}
        ),
    }


def result_line(result: HostResult) -> str:
    return json.dumps(result_record(result), ensure_ascii=False)
