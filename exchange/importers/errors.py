"""What an import reports: each problem found names the file, the line and the key."""

from dataclasses import dataclass

MAX_REPORTED_ERRORS = 100


@dataclass(frozen=True)
class BundleError:
    file: str
    line: int | None
    key: str | None
    problem: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", line {self.line}"
        if self.key is not None:
            where += f", key '{self.key}'"
        return f"{where}: {self.problem}"


class BundleInvalid(Exception):
    def __init__(self, errors: list[BundleError], total: int):
        self.errors = errors
        self.total = total
        more = f" (showing the first {len(errors)})" if total > len(errors) else ""
        super().__init__(f"{total} error(s){more}; nothing was imported")


class ErrorLog:
    """Every problem found, counted; the first MAX_REPORTED_ERRORS kept for the report."""

    def __init__(self):
        self.reported: list[BundleError] = []
        self.total = 0

    def add(self, error: BundleError) -> None:
        self.total += 1
        if len(self.reported) < MAX_REPORTED_ERRORS:
            self.reported.append(error)

    def raise_if_any(self) -> None:
        if self.total:
            raise BundleInvalid(self.reported, self.total)
