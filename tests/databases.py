"""Databases of a test or benchmark run's own, on the server an admin URL reaches."""

from __future__ import annotations

from adapters import postgres


async def create_database(admin_url: str, name: str) -> str:
    """A new empty database on the server ``admin_url`` reaches; its URL."""
    conn = await postgres.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return postgres.with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    conn = await postgres.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
