"""Importing export bundles into the ledger tables (the spec's export-bundle.md).

One module per concern: archives.py finds and opens a bundle's files (folder, zip, tar,
gzip); values.py, specs.py and lines.py parse and validate lines; staging.py holds rows
until the bundle is known to be valid and moves them into the ledger; importer.py runs an
import (see its docstring). Callers use `exchange.importers.<name>`; a test that patches a
name patches it in the module that defines it.
"""

from .archives import BundleLayoutError, Member, open_bundle
from .errors import BundleError, BundleInvalid
from .importer import FileResult, ImportResult, bundle_import, report_lines
from .specs import SPECS, SPECS_BY_FILENAME, Column, FileSpec

__all__ = [
    "SPECS",
    "SPECS_BY_FILENAME",
    "BundleError",
    "BundleInvalid",
    "BundleLayoutError",
    "Column",
    "FileResult",
    "FileSpec",
    "ImportResult",
    "Member",
    "bundle_import",
    "open_bundle",
    "report_lines",
]
