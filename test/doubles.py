"""Test doubles shared by several test files (imported as ``from doubles import ...``)."""

from __future__ import annotations


class RecordingLogger:
    """Stands in for an rclpy logger: keeps (level, message) pairs of warnings and errors."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def warning(self, msg: str, **kwargs: object) -> None:
        self.records.append(('warning', msg))

    def error(self, msg: str, **kwargs: object) -> None:
        self.records.append(('error', msg))
