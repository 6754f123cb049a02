"""Steps of ``candela demo``; each module has ``TITLE`` and ``run(context)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from candela.core.db import connect, upgrade


@dataclass
class DemoContext:
    """What the demo steps share: the upgraded database and the output folder."""

    engine: Engine
    out_dir: Path

    @classmethod
    def create(cls, database_url: str | None, out_dir: str) -> DemoContext:
        engine = connect(database_url, require_schema=False)
        upgrade(engine)
        path = Path(out_dir)
        path.mkdir(parents=True, exist_ok=True)
        return cls(engine=engine, out_dir=path)
