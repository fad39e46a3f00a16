"""The HTTP side: an ASGI app that routes Salesforce's paths to the store, bulk jobs and auth.

Each request waits ``delay`` seconds (without holding a thread), then is
handled in a worker thread: the injected failures of ``fail_next`` first,
then the access token, then the route. Every answer is logged as a
:class:`Call`. Error bodies are Salesforce's: a JSON list of
``{"message", "errorCode"}`` (with ``fields`` for record errors) on the
data API, ``{"error", "error_description"}`` on the token endpoint.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tests.sandbox.salesforce import ids, soql
from tests.sandbox.salesforce.auth import OAuthError, basic_credentials, bearer
from tests.sandbox.salesforce.bulk import RESULT_KINDS
from tests.sandbox.salesforce.schema import ApiError, SObject, not_found
from tests.sandbox.salesforce.store import MultipleMatches

if TYPE_CHECKING:
    from tests.sandbox.salesforce.sandbox import SalesforceSandbox

JSON = "application/json;charset=UTF-8"
_VERSIONED = re.compile(r"^/services/data/v(\d{2,3}\.\d)(/.*)?$")
_LOCATOR = re.compile(r"^(01g[0-9A-Za-z]{15})-(\d+)$")
_BATCH_SIZE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
#: Release names of API versions: v20.0 was Winter '11, then three releases a year.
_SEASONS = ("Winter", "Spring", "Summer")
VERSIONS = [f"{n}.0" for n in range(31, 63)]


class Call(NamedTuple):
    """One request as the sandbox answered it."""

    method: str
    path: str
    status: int


@dataclass
class Cursor:
    """The rest of a query's records, read a page at a time through ``nextRecordsUrl``."""

    records: list[dict[str, Any]]
    endpoint: str  # "query" or "queryAll"
    version: str
    batch: int


class Reply(NamedTuple):
    status: int
    body: bytes
    media_type: str | None
    headers: dict[str, str]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(body).encode(), JSON, headers or {})


def _empty(status: int = 204) -> Reply:
    return Reply(status, b"", None, {})


def release(version: str) -> str:
    """``Winter '24`` for ``59.0``."""
    step = int(float(version)) - 20
    return f"{_SEASONS[step % 3]} '{11 + step // 3:02d}"


def _object_body(body: bytes) -> dict[str, Any]:
    """A JSON object body, or 400 ``JSON_PARSER_ERROR`` as Salesforce answers."""
    try:
        value = json.loads(body or b"null")
    except json.JSONDecodeError as exc:
        raise ApiError.one(
            400,
            "JSON_PARSER_ERROR",
            f"Unexpected character: {exc.msg} at [line:{exc.lineno}, column:{exc.colno}]",
        ) from None
    except UnicodeDecodeError:
        raise ApiError.one(
            400, "JSON_PARSER_ERROR", "Invalid UTF-8 start byte at [line:1, column:1]"
        ) from None
    if not isinstance(value, dict):
        raise ApiError.one(
            400,
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of the sObject from the request body: a JSON object "
            "is expected at [line:1, column:1]",
        )
    return value


class Api:
    """The ASGI app of one :class:`SalesforceSandbox`."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        self.store = sandbox.store
        self.bulk = sandbox.bulk

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        delay = self.sandbox.delay
        if delay > 0:
            await asyncio.sleep(delay)
        reply = await run_in_threadpool(
            self.handle,
            request.method,
            scope["path"],
            dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        response = Response(
            reply.body, reply.status, headers=reply.headers, media_type=reply.media_type
        )
        await response(scope, receive, send)

    # ------------------------------------------------------------ dispatch
    def handle(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        """Answer one request and log it."""
        try:
            reply = self._dispatch(method, path, params, headers, body)
        except ApiError as exc:
            reply = _json(exc.status, exc.errors)
        except OAuthError as exc:
            reply = _json(400, exc.body)
        except Exception as exc:  # a bug in the sandbox: answer as Salesforce does, and say it
            traceback.print_exc(file=sys.stderr)
            reply = _json(
                500,
                [
                    {
                        "message": f"An unexpected error occurred: {type(exc).__name__}: {exc}",
                        "errorCode": "UNKNOWN_EXCEPTION",
                    }
                ],
            )
        self.sandbox._log(Call(method, path, reply.status))
        return reply

    def _dispatch(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        sandbox = self.sandbox
        if path.rstrip("/") == "/services/oauth2/token":
            if method != "POST":
                raise ApiError.one(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")
            form = dict(parse_qsl(body.decode("utf-8", "replace")))
            with self.store.lock:
                token = sandbox.tokens.grant(
                    form, basic_credentials(headers.get("authorization")), sandbox.url
                )
            return _json(200, token)
        if not path.startswith("/services/data") and not path.startswith("/id/"):
            raise not_found()
        injected = sandbox._take_failure()
        if injected is not None:
            return _json(injected[0], injected[1])
        if path.rstrip("/") == "/services/data":
            if method != "GET":
                raise self._not_allowed(method, "GET")
            versions = [
                {"label": release(v), "url": f"/services/data/v{v}", "version": v} for v in VERSIONS
            ]
            return _json(200, versions)
        with self.store.lock:
            if not sandbox.tokens.valid(bearer(headers.get("authorization"))):
                return Reply(
                    401,
                    json.dumps(
                        [
                            {
                                "message": "Session expired or invalid",
                                "errorCode": "INVALID_SESSION_ID",
                            }
                        ]
                    ).encode(),
                    JSON,
                    {"WWW-Authenticate": "Token"},
                )
        if path.startswith("/id/"):
            return self._identity(method, path)
        match = _VERSIONED.match(path)
        if match is None:
            raise not_found()
        version, rest = match.group(1), (match.group(2) or "").rstrip("/")
        counted = rest != "/limits"
        used = sandbox._count_request() if counted else sandbox.api_requests
        if used is None:
            raise ApiError.one(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        reply = self._route(method, version, rest, params, headers, body)
        reply.headers.setdefault("Sforce-Limit-Info", f"api-usage={used}/{sandbox.api_limit_max}")
        return reply

    @staticmethod
    def _not_allowed(method: str, allowed: str) -> ApiError:
        return ApiError.one(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{method}' not allowed. Allowed are {allowed}",
        )

    def _route(
        self,
        method: str,
        version: str,
        rest: str,
        params: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        parts = [p for p in rest.split("/") if p]
        table: dict[str, Callable[[], Reply]]
        if not parts:
            table = {"GET": lambda: self._resources(version)}
        elif parts == ["limits"]:
            table = {"GET": lambda: _json(200, self.sandbox.limits())}
        elif parts[0] in ("query", "queryAll") and len(parts) <= 2:
            endpoint = parts[0]
            if len(parts) == 1:
                table = {"GET": lambda: self._query(endpoint, version, params, headers)}
            else:
                locator = parts[1]
                table = {"GET": lambda: self._query_more(locator)}
        elif parts[0] == "sobjects":
            return self._sobjects(method, version, parts[1:], params, body)
        elif parts[0] == "jobs" and len(parts) >= 2 and parts[1] in ("ingest", "query"):
            return self._jobs(method, version, parts[1], parts[2:], params, body)
        else:
            raise not_found()
        handler = table.get(method)
        if handler is None:
            raise self._not_allowed(method, ",".join(table))
        return handler()

    # ----------------------------------------------------------- resources
    def _resources(self, version: str) -> Reply:
        base = f"/services/data/v{version}"
        return _json(
            200,
            {
                "limits": f"{base}/limits",
                "query": f"{base}/query",
                "queryAll": f"{base}/queryAll",
                "sobjects": f"{base}/sobjects",
                "jobs": f"{base}/jobs",
            },
        )

    def _identity(self, method: str, path: str) -> Reply:
        if method != "GET":
            raise self._not_allowed(method, "GET")
        creds = self.sandbox.credentials
        if path.rstrip("/") != f"/id/{creds.org_id}/{creds.user_id}":
            raise not_found()
        url = self.sandbox.url
        return _json(
            200,
            {
                "id": f"{url}{path}",
                "asserted_user": True,
                "user_id": creds.user_id,
                "organization_id": creds.org_id,
                "username": creds.username,
                "nick_name": creds.username.split("@")[0],
                "display_name": "Integration User",
                "email": "integration@example.com",
                "active": True,
                "user_type": "STANDARD",
                "language": "en_US",
                "locale": "en_US",
                "utcOffset": 0,
                "urls": {
                    "rest": f"{url}/services/data/v{{version}}/",
                    "sobjects": f"{url}/services/data/v{{version}}/sobjects/",
                    "query": f"{url}/services/data/v{{version}}/query/",
                    "limits": f"{url}/services/data/v{{version}}/limits/",
                },
            },
        )

    # --------------------------------------------------------------- query
    def _query(
        self, endpoint: str, version: str, params: dict[str, str], headers: dict[str, str]
    ) -> Reply:
        text = params.get("q", "")
        query = soql.parse(text, self.store)
        total, records = soql.run(
            query, self.store, include_deleted=endpoint == "queryAll", version=version
        )
        if query.count:
            return _json(200, {"totalSize": total, "done": True, "records": []})
        batch = 2000
        option = _BATCH_SIZE.search(headers.get("sforce-query-options", ""))
        if option:
            batch = max(200, min(2000, int(option.group(1))))
        if len(records) <= batch:
            return _json(200, {"totalSize": total, "done": True, "records": records})
        locator = self.sandbox._open_cursor(Cursor(records, endpoint, version, batch))
        return self._page(locator, 0)

    def _query_more(self, locator: str) -> Reply:
        match = _LOCATOR.match(locator)
        if match is None:
            raise ApiError.one(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(match.group(1), int(match.group(2)))

    def _page(self, locator: str, start: int) -> Reply:
        cursor = self.sandbox._cursor(locator)
        if cursor is None or start >= len(cursor.records) or start % cursor.batch:
            raise ApiError.one(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        end = start + cursor.batch
        body: dict[str, Any] = {
            "totalSize": len(cursor.records),
            "done": end >= len(cursor.records),
        }
        if end < len(cursor.records):
            body["nextRecordsUrl"] = (
                f"/services/data/v{cursor.version}/{cursor.endpoint}/{locator}-{end}"
            )
        else:
            self.sandbox._close_cursor(locator)
        body["records"] = cursor.records[start:end]
        return _json(200, body)

    # ------------------------------------------------------------ sobjects
    def _sobjects(
        self, method: str, version: str, parts: list[str], params: dict[str, str], body: bytes
    ) -> Reply:
        store = self.store
        if not parts:
            if method != "GET":
                raise self._not_allowed(method, "GET,HEAD")
            return _json(
                200,
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [s.summary(version) for s in store.schema.values()],
                },
            )
        sobject = store.sobject(parts[0])
        if len(parts) == 1:
            if method == "GET":
                return _json(200, self._metadata(sobject, version))
            if method == "POST":
                new_id = store.create(sobject.name, _object_body(body))
                return _json(201, {"id": new_id, "success": True, "errors": []})
            raise self._not_allowed(method, "GET,HEAD,POST")
        if len(parts) == 2 and parts[1] == "describe":
            if method != "GET":
                raise self._not_allowed(method, "GET,HEAD")
            return _json(200, sobject.describe(version))
        if len(parts) == 2:
            record_id = parts[1]
            if method == "GET":
                row = store.get(sobject.name, record_id)
                return _json(200, self._record(sobject, row, version, params.get("fields")))
            if method == "PATCH":
                store.update(sobject.name, record_id, _object_body(body))
                return _empty()
            if method == "DELETE":
                store.delete(sobject.name, record_id)
                return _empty()
            raise self._not_allowed(method, "GET,PATCH,HEAD,DELETE")
        if len(parts) == 3:
            return self._by_external_id(method, version, sobject, parts[1], parts[2], params, body)
        raise not_found()

    def _metadata(self, sobject: SObject, version: str) -> dict[str, Any]:
        with self.store.lock:
            rows = [r for r in self.store.tables[sobject.name].rows.values() if not r["IsDeleted"]]
            recent = [
                {
                    "attributes": {
                        "type": sobject.name,
                        "url": f"/services/data/v{version}/sobjects/{sobject.name}/{r['Id']}",
                    },
                    "Id": r["Id"],
                    **({"Name": r["Name"]} if "Name" in r else {}),
                }
                for r in rows[-5:][::-1]
            ]
        return {"objectDescribe": sobject.summary(version), "recentItems": recent}

    def _record(
        self, sobject: SObject, row: dict[str, Any], version: str, fields: str | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": sobject.name,
                "url": f"/services/data/v{version}/sobjects/{sobject.name}/{row['Id']}",
            }
        }
        if fields:
            for name in (n.strip() for n in fields.split(",") if n.strip()):
                f = sobject.field(name)
                if f is None:
                    raise ApiError.one(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{name}' on entity '{sobject.name}'. If you are "
                        "attempting to use a custom field, be sure to append the '__c' after the "
                        "custom field name. Please reference your WSDL or the describe call for "
                        "the appropriate names.",
                    )
                out[f.name] = row[f.name]
        else:
            out.update(row)
        return out

    def _by_external_id(
        self,
        method: str,
        version: str,
        sobject: SObject,
        field_name: str,
        value: str,
        params: dict[str, str],
        body: bytes,
    ) -> Reply:
        store = self.store

        def urls(found: list[str]) -> list[str]:
            return [f"/services/data/v{version}/sobjects/{sobject.name}/{i}" for i in found]

        if method == "PATCH":
            values = _object_body(body)
            try:
                record_id, created = store.upsert(sobject.name, field_name, value, values)
            except MultipleMatches as exc:
                return _json(300, urls(exc.ids))
            if not created and float(version) < 46.0:
                return _empty()  # before Summer '19 an update by upsert answered 204
            return _json(
                201 if created else 200,
                {"id": record_id, "success": True, "errors": [], "created": created},
            )
        if method not in ("GET", "DELETE"):
            raise self._not_allowed(method, "GET,PATCH,HEAD,DELETE")
        f = store.external_field(sobject, field_name)
        found = store.lookup(sobject.name, f.name, value)
        if len(found) > 1:
            return _json(300, urls(found))
        if not found:
            raise not_found()
        if method == "DELETE":
            store.delete(sobject.name, found[0])
            return _empty()
        row = store.get(sobject.name, found[0])
        return _json(200, self._record(sobject, row, version, params.get("fields")))

    # ---------------------------------------------------------------- bulk
    def _jobs(
        self,
        method: str,
        version: str,
        kind: str,
        parts: list[str],
        params: dict[str, str],
        body: bytes,
    ) -> Reply:
        bulk = self.bulk
        if not parts:
            if method == "POST":
                payload = _object_body(body)
                if kind == "ingest":
                    return _json(200, bulk.create_ingest(payload, version))
                return _json(200, bulk.create_query(payload, version))
            if method == "GET":
                return _json(200, bulk.list_jobs(kind))
            raise self._not_allowed(method, "GET,POST")
        job_id = parts[0]
        if ids.normalize(job_id) is None:
            raise not_found()
        if len(parts) == 1:
            if method == "GET":
                return _json(200, bulk.info(kind, job_id))
            if method == "PATCH":
                state = str(_object_body(body).get("state", ""))
                return _json(200, bulk.set_state(kind, job_id, state))
            if method == "DELETE":
                bulk.delete(kind, job_id)
                return _empty()
            raise self._not_allowed(method, "GET,PATCH,DELETE")
        if len(parts) != 2:
            raise not_found()
        resource = parts[1]
        if kind == "ingest" and resource == "batches":
            if method != "PUT":
                raise self._not_allowed(method, "PUT")
            bulk.upload(job_id, body)
            return _empty(201)
        if kind == "ingest" and resource.lower() in RESULT_KINDS:
            if method != "GET":
                raise self._not_allowed(method, "GET")
            text = bulk.ingest_results(job_id, RESULT_KINDS[resource.lower()])
            return Reply(200, text.encode(), "text/csv", {})
        if kind == "query" and resource == "results":
            if method != "GET":
                raise self._not_allowed(method, "GET")
            max_records = params.get("maxRecords")
            if max_records is not None and not max_records.isdigit():
                raise ApiError(
                    400,
                    [{"errorCode": "INVALIDPARAMETER", "message": "maxRecords must be a number"}],
                )
            text, locator, count = bulk.query_results(
                job_id, params.get("locator") or None, int(max_records) if max_records else None
            )
            headers = {"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(count)}
            return Reply(200, text.encode(), "text/csv", headers)
        raise not_found()
