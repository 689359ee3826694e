import time
from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from simulator.simulation import simulate


def parse_start(value: str) -> datetime:
    """An ISO-8601 instant on a whole minute, as naive UTC (the bundle's convention)."""
    try:
        start = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--start: {value!r} is not an ISO-8601 instant such as 2025-07-03T10:00:00Z") from exc
    if start.tzinfo is not None:
        start = start.astimezone(UTC).replace(tzinfo=None)
    if start.second or start.microsecond:
        # price rows are one a minute from the window start; snapshots must fall on them
        raise CommandError("--start must be on a whole minute")
    return start


class Command(BaseCommand):
    help = (
        "Write a simulated incident: OUTDIR/bundle/*.jsonl (an export bundle), OUTDIR/incident.json "
        "and OUTDIR/injected.jsonl (the errors planted on purpose)."
    )

    def add_arguments(self, parser):
        parser.add_argument("outdir", type=Path)
        parser.add_argument("--users", type=int, required=True)
        parser.add_argument("--seed", type=int, required=True)
        parser.add_argument("--fills", type=int, default=None, help="total number of fills (default: 10 per user)")
        parser.add_argument(
            "--start", default=None, help="window start, ISO-8601 UTC (default: 4 days ago at 10:00 UTC)"
        )

    def handle(self, *args, outdir, users, seed, fills, start, **options):
        if users < 1 or (fills is not None and fills < 0):
            raise CommandError("--users must be at least 1 and --fills at least 0")
        started = time.perf_counter()
        counts = simulate(
            outdir=outdir, users=users, seed=seed, fills=fills, window_start=parse_start(start) if start else None
        )
        summary = " ".join(f"{name}={count}" for name, count in counts.items())
        self.stdout.write(f"Wrote {outdir}: {summary} in {time.perf_counter() - started:.1f}s")
