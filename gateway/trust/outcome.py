"""What a key command did (or, with --dry-run, would do): the steps an operator reads;
or, raised instead, why it could not (:class:`KeyOpError`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    """What a key command did (or, with --dry-run, would do)."""

    steps: list[str] = field(default_factory=list)
    serial: int | None = None  # the directory version in force afterwards

    def add(self, step: str) -> None:
        self.steps.append(step)


class KeyOpError(Exception):
    """A key operation could not be done; one line says why. Nothing was half-done
    that a re-run would not finish."""
