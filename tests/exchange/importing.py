"""Running the import_bundle command in tests, and reading what it left in the ledger."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from exchange.importers import SPECS


def import_bundle(path, *args):
    out, err = io.StringIO(), io.StringIO()
    call_command("import_bundle", str(path), *args, stdout=out, stderr=err)
    return out.getvalue()


def failing_import(path):
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_bundle", str(path), stdout=io.StringIO(), stderr=err)
    return err.getvalue() + str(raised.value)


def row_counts():
    return {spec.name: spec.model.objects.count() for spec in SPECS}


def ledger_state():
    """Every stored ledger row, so a test can show that a failed import changed nothing."""
    return {spec.name: sorted(map(repr, spec.model.objects.values_list())) for spec in SPECS}


def append_line(bundle, filename, obj):
    with open(bundle / filename, "a") as f:
        f.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")


def first_line(bundle, filename):
    with open(bundle / filename) as f:
        return json.loads(f.readline())
