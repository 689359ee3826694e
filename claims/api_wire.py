"""How the API reads and writes JSON: numbers read as Decimal (money never passes through float),
and every error answered as JSON in the documented shape, whatever raised it."""

import codecs
import json
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import renderers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json as drf_json


class DecimalJSONParser(JSONParser):
    """JSON with numbers as Decimal; nesting too deep for the parser is a 400, not a crash."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return drf_json.load(
                codecs.getreader(encoding)(stream),
                parse_float=Decimal,
                parse_constant=drf_json.strict_constant if self.strict else None,
            )
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc


class JSONRenderer(renderers.JSONRenderer):
    """Unicode as it is, except what UTF-8 cannot carry (a lone surrogate echoed back in an error
    message): then the whole body is written with \\u escapes, still valid JSON."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return json.dumps(
                data, cls=self.encoder_class, ensure_ascii=True, allow_nan=False, separators=(",", ":")
            ).encode()


def api_exception_handler(exc, context):
    """DRF's handler, plus what DRF leaves to Django's HTML pages."""
    # Imported here: DRF's views read the renderer classes of this module from the settings.
    from rest_framework.response import Response
    from rest_framework.views import exception_handler

    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": f"the request body is too large (at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes)"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    return exception_handler(exc, context)


class ApiJsonErrors:
    """Middleware: an error answered under /api/ outside DRF's views (an unknown path, a 500) is
    JSON too, `{"detail": ...}`, never Django's HTML page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return JsonResponse(
                {"detail": response.reason_phrase},
                status=response.status_code,
                headers={k: v for k, v in response.items() if k == "Retry-After"},
            )
        return response
