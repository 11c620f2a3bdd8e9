"""Views and a middleware for `make bench` (bench/run.py), mounted only when ``BENCH`` is on.

- ``/bench/trivial``: the baseline every row is a ratio to, a JSON view through the same
  middleware as every other view of the site;
- ``/a/bench/claims``: a DRF view that needs only the bearer token (its claims and scopes), the
  shape of most API views of a resource server;
- ``/a/bench/drf``: the same DRF view without authentication or permissions, what DRF itself
  costs: the floor of the bearer rows (a reference row, no target);
- :class:`QueryCountMiddleware`: ``X-Bench-Queries``, the SQL statements a request ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cells_oidc.api.authentication import BearerTokenAuthentication
from cells_oidc.api.permissions import HasScope


@csrf_exempt
def trivial(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


class ClaimsView(APIView):
    """What the token says: never touches ``request.user`` (no query)."""

    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [HasScope("openid")]

    def get(self, request: Request) -> Response:
        info = request.auth
        return Response({"sub": info.subject, "client_id": info.client_id, "scope": sorted(info.scopes)})


class DrfView(APIView):
    """The floor of :class:`ClaimsView`: DRF's dispatch, negotiation and rendering, no token."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class QueryCountMiddleware:
    """Counts the statements of every database connection during the request (``X-Bench-Queries``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        count = [0]

        def counting(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            count[0] += 1
            return execute(sql, params, many, context)

        wrappers = [connections[alias].execute_wrapper(counting) for alias in connections]
        for wrapper in wrappers:
            wrapper.__enter__()
        try:
            response = self.get_response(request)
        finally:
            for wrapper in reversed(wrappers):
                wrapper.__exit__(None, None, None)
        response["X-Bench-Queries"] = str(count[0])
        return response
