"""Database addresses for the benchmarks, which each work in a database of their own."""

from dj_database_url import parse as parse_db_url


def database_urls(url: str, dbname: str) -> tuple[str, str]:
    """(the server's `postgres` database, the bench database `dbname`) on the server of `url`."""
    config = parse_db_url(url)
    auth = (config["USER"] or "postgres") + (f":{config['PASSWORD']}" if config.get("PASSWORD") else "")
    server = f"postgres://{auth}@{config['HOST'] or '127.0.0.1'}:{config['PORT'] or 5432}"
    return f"{server}/postgres", f"{server}/{dbname}"
