"""What an API process knows of the read models' positions (app/queries.py Positions)."""

from __future__ import annotations

import asyncpg

from app.queries import Positions, ReadModels


async def test_a_new_process_knows_the_positions_reached_before_it_started(
    db: str, pool: asyncpg.Pool
) -> None:
    # Before this process heard a single NOTIFY: GET /api/issues says in Inbox-Position
    # what its page reflects at least, and 0 would make a page's feed replay the log.
    await pool.execute(
        "INSERT INTO projection_positions (name, position) VALUES ('inbox', 41)"
        " ON CONFLICT (name) DO UPDATE SET position = 41"
    )
    positions = Positions(db, ReadModels(pool))
    await positions.start()
    try:
        assert positions.known("inbox") == 41
        assert positions.live
    finally:
        await positions.close()
