"""Databases for the benchmarks, which each work in a database of their own: its address, and a fresh one."""

import psycopg
from dj_database_url import parse as parse_db_url


def database_urls(url: str, dbname: str) -> tuple[str, str]:
    """(the server's `postgres` database, the bench database `dbname`) on the server of `url`."""
    config = parse_db_url(url)
    auth = (config["USER"] or "postgres") + (f":{config['PASSWORD']}" if config.get("PASSWORD") else "")
    server = f"postgres://{auth}@{config['HOST'] or '127.0.0.1'}:{config['PORT'] or 5432}"
    return f"{server}/postgres", f"{server}/{dbname}"


def database_recreate(admin_url: str, dbname: str) -> None:
    """Drop the bench database `dbname` (whoever is still connected to it) and create it empty."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {dbname}")
