import getpass
import time

from django.core.management.base import BaseCommand, CommandError

from exchange.importers import BundleInvalid, bundle_import, report_lines


class Command(BaseCommand):
    help = "Import an exchange export bundle (a folder, .zip or .tar.gz of JSON Lines files)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the bundle: a folder, a .zip or a .tar.gz")
        parser.add_argument("--by", default=None, help="who runs the import, for the audit record (default: OS user)")
        parser.add_argument(
            "--recheck",
            action="store_true",
            help="read every file, even one whose exact content an earlier import already stored",
        )

    def handle(self, *args, path, by, recheck, **options):
        started = time.perf_counter()
        try:
            result = bundle_import(path=path, imported_by=by or getpass.getuser(), recheck=recheck, out=self.stdout)
        except BundleInvalid as exc:
            for error in exc.errors:
                self.stderr.write(str(error))
            if exc.total > len(exc.errors):
                self.stderr.write(f"... and {exc.total - len(exc.errors)} more")
            raise CommandError(str(exc), returncode=1) from exc
        for line in report_lines(result):
            self.stdout.write(line)
        self.stdout.write(f"Done in {time.perf_counter() - started:.1f}s.")
