"""Where a site lives, and the environment overrides every command shares."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CommandEnvironment:
    """What the CLI takes from the environment before it parses a site's config."""

    site_dir: Path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> CommandEnvironment:
        env = os.environ if environ is None else environ
        return cls(site_dir=Path(env.get("VALISE_DIR") or Path.cwd()))
