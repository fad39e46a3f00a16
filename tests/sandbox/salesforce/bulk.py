"""Bulk API 2.0: ingest jobs (insert, update, upsert, delete, hardDelete) and query jobs.

An ingest job is created ``Open``, takes one CSV upload, and after
``PATCH {"state": "UploadComplete"}`` is processed row by row through the
same checks as the REST API; ``delay`` seconds later (0: at once) it is
``JobComplete`` (``InProgress`` while it waits). Results are CSVs:

- ``successfulResults``: ``"sf__Id","sf__Created"`` then the row as uploaded;
- ``failedResults``: ``"sf__Id","sf__Error"`` then the row, the error written
  ``CODE:message:Field --``;
- ``unprocessedrecords``: rows of an aborted job that were never processed.

A query job runs its SOQL when created (a bad query is a 400 then) and is
``JobComplete`` ``delay`` seconds later; ``GET .../results?maxRecords=N&locator=L``
pages through a CSV with every value quoted, the next page's locator in
``Sforce-Locator`` (``null`` on the last) and the page's size in
``Sforce-NumberOfRecords``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.sandbox.salesforce import ids, soql
from tests.sandbox.salesforce.schema import ApiError, Field, csv_text, not_found, sf_datetime
from tests.sandbox.salesforce.store import MultipleMatches, Store

DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")
RESULT_KINDS = {
    "successfulresults": "successful",
    "failedresults": "failed",
    "unprocessedrecords": "unprocessed",
}


def _job_error(message: str, code: str = "INVALIDJOB", status: int = 400) -> ApiError:
    return ApiError(status, [{"errorCode": code, "message": message}])


@dataclass
class Job:
    """One Bulk 2.0 job and what it has done."""

    id: str
    kind: str  # "ingest" or "query"
    operation: str
    object: str
    api_version: str
    column_delimiter: str = "COMMA"
    line_ending: str = "LF"
    external_id_field: str | None = None
    query: str | None = None
    state: str = "Open"
    created: str = ""
    modstamp: str = ""
    ready_at: float = 0.0
    error_message: str | None = None
    data: str | None = None
    header: list[str] = field(default_factory=list)
    successful: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    processed: int = 0
    processing_ms: int = 0
    result_header: list[str] = field(default_factory=list)
    result_rows: list[list[str]] = field(default_factory=list)

    @property
    def delimiter(self) -> str:
        return DELIMITERS[self.column_delimiter]

    @property
    def newline(self) -> str:
        return LINE_ENDINGS[self.line_ending]

    def info(self, user_id: str, *, created: bool = False) -> dict[str, Any]:
        """The job as ``GET jobs/{kind}/{id}`` shows it (and ``POST`` when ``created``)."""
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": user_id,
            "createdDate": self.created,
            "systemModstamp": self.modstamp,
            "state": self.state,
        }
        if self.external_id_field:
            body["externalIdFieldName"] = self.external_id_field
        body.update(
            {
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": float(self.api_version),
            }
        )
        if created:
            if self.kind == "ingest":
                body["contentUrl"] = (
                    f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
                )
            body.update({"lineEnding": self.line_ending, "columnDelimiter": self.column_delimiter})
            return body
        body["jobType"] = "V2Ingest" if self.kind == "ingest" else "V2Query"
        body.update({"lineEnding": self.line_ending, "columnDelimiter": self.column_delimiter})
        body["numberRecordsProcessed"] = self.processed
        if self.kind == "ingest":
            body["numberRecordsFailed"] = len(self.failed)
        body.update(
            {
                "retries": 0,
                "totalProcessingTime": self.processing_ms,
                "apiActiveProcessingTime": self.processing_ms,
                "apexProcessingTime": 0,
            }
        )
        if self.error_message:
            body["errorMessage"] = self.error_message
        return body


class Bulk:
    """Every Bulk 2.0 job of the org; methods hold the store's lock."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.delay = 0.0
        self.jobs: dict[str, Job] = {}
        self.number = 0

    def clear(self) -> None:
        with self.store.lock:
            self.jobs.clear()

    # -------------------------------------------------------------- jobs
    def _new_job(
        self, kind: str, operation: str, obj: str, version: str, body: dict[str, Any]
    ) -> Job:
        delimiter = str(body.get("columnDelimiter") or "COMMA")
        line_ending = str(body.get("lineEnding") or "LF")
        if delimiter not in DELIMITERS:
            raise _job_error(f"Invalid column delimiter: {delimiter}")
        if line_ending not in LINE_ENDINGS:
            raise _job_error(f"Invalid line ending: {line_ending}")
        self.number += 1
        now = sf_datetime(datetime.now(UTC))
        job = Job(
            id=ids.make_id("750", self.number),
            kind=kind,
            operation=operation,
            object=obj,
            api_version=version,
            column_delimiter=delimiter,
            line_ending=line_ending,
            created=now,
            modstamp=now,
        )
        self.jobs[job.id] = job
        return job

    def job(self, kind: str, job_id: str) -> Job:
        """A job of this kind by id; 404 ``NOT_FOUND`` otherwise."""
        full = ids.normalize(job_id)
        job = self.jobs.get(full or "")
        if job is None or job.kind != kind:
            raise not_found()
        self._advance(job)
        return job

    def create_ingest(self, body: dict[str, Any], version: str) -> dict[str, Any]:
        """``POST jobs/ingest``: a new ``Open`` job."""
        with self.store.lock:
            operation = str(body.get("operation") or "")
            if operation not in INGEST_OPERATIONS:
                raise _job_error(f"InvalidJob : Invalid operation: {operation}")
            content_type = body.get("contentType", "CSV")
            if content_type != "CSV":
                raise _job_error(f"InvalidJob : Invalid content type: {content_type}")
            sobject = self.store.find_sobject(str(body.get("object") or ""))
            if sobject is None:
                raise _job_error(f"Unable to find object: {body.get('object')}")
            external: Field | None = None
            if operation == "upsert":
                name = body.get("externalIdFieldName")
                if not name:
                    raise _job_error(
                        f"External ID was blank for {sobject.name}. An External ID must be "
                        "specified for upsert."
                    )
                external = sobject.field(str(name))
                if external is None or not (external.external_id or external.name == "Id"):
                    raise _job_error(
                        f"Field name provided, {name} is not an External ID or indexed field "
                        f"for {sobject.name}"
                    )
            job = self._new_job("ingest", operation, sobject.name, version, body)
            job.external_id_field = external.name if external else None
            return job.info(self.store.user_id, created=True)

    def create_query(self, body: dict[str, Any], version: str) -> dict[str, Any]:
        """``POST jobs/query``: runs the query now; the job completes after ``delay``."""
        with self.store.lock:
            operation = str(body.get("operation") or "")
            if operation not in QUERY_OPERATIONS:
                raise _job_error(f"InvalidJob : Invalid operation: {operation}")
            text = str(body.get("query") or "")
            query = soql.parse(text, self.store)
            if query.count or query.aggregate is not None:
                raise _job_error(
                    "Aggregate queries are not supported in Bulk API 2.0 query jobs", "API_ERROR"
                )
            job = self._new_job("query", operation, query.sobject.name, version, body)
            job.query = text
            job.state = "UploadComplete"
            _, rows = soql.run(
                query, self.store, include_deleted=operation == "queryAll", version=version
            )
            job.result_header = [ref.path for ref in query.fields]
            job.result_rows = [[csv_text(_flat(r, ref.path)) for ref in query.fields] for r in rows]
            job.ready_at = time.monotonic() + self.delay
            info = job.info(self.store.user_id, created=True)
            self._advance(job)
            return info

    def list_jobs(self, kind: str) -> dict[str, Any]:
        with self.store.lock:
            records = []
            for job in self.jobs.values():
                if job.kind == kind:
                    self._advance(job)
                    records.append(job.info(self.store.user_id))
            return {"done": True, "records": records, "nextRecordsUrl": None}

    def info(self, kind: str, job_id: str) -> dict[str, Any]:
        with self.store.lock:
            return self.job(kind, job_id).info(self.store.user_id)

    def upload(self, job_id: str, data: bytes) -> None:
        """``PUT jobs/ingest/{id}/batches``: the job's one CSV (201, no body)."""
        with self.store.lock:
            job = self.job("ingest", job_id)
            if job.state != "Open":
                raise _job_error(
                    f"Job state: {job.state} is not valid for uploading data",
                    "INVALIDJOBSTATE",
                    409,
                )
            if job.data is not None:
                raise _job_error(
                    f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / "
                    "'Delete' the current Job then create a new Job and make sure you only do "
                    "'PUT' once on a given Job.",
                    "BULK_API_ERROR",
                )
            try:
                job.data = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise _job_error("Invalid CSV: the data is not UTF-8", "BULK_API_ERROR") from None
            job.modstamp = sf_datetime(datetime.now(UTC))

    def set_state(self, kind: str, job_id: str, state: str) -> dict[str, Any]:
        """``PATCH jobs/{kind}/{id}``: ``UploadComplete`` (ingest) or ``Aborted``."""
        with self.store.lock:
            job = self.job(kind, job_id)
            if state == "Aborted":
                if job.state not in ("Open", "UploadComplete", "InProgress"):
                    raise _job_error(
                        f"Job state: {job.state} cannot be changed to Aborted",
                        "INVALIDJOBSTATE",
                        409,
                    )
                job.state = "Aborted"
                if job.kind == "ingest" and job.data is not None and job.processed == 0:
                    header, rows = self._parse(job)
                    job.header, job.unprocessed = header, rows
            elif state == "UploadComplete" and kind == "ingest":
                if job.state != "Open":
                    raise _job_error(
                        f"Job state: {job.state} cannot be changed to UploadComplete",
                        "INVALIDJOBSTATE",
                        409,
                    )
                job.state = "UploadComplete"
                job.ready_at = time.monotonic() + self.delay
            else:
                raise _job_error(f"Invalid state: {state}", "INVALIDJOBSTATE")
            job.modstamp = sf_datetime(datetime.now(UTC))
            info = job.info(self.store.user_id)
            self._advance(job)
            return info

    def delete(self, kind: str, job_id: str) -> None:
        """``DELETE jobs/{kind}/{id}`` (204): a job that is not being processed."""
        with self.store.lock:
            job = self.job(kind, job_id)
            if job.state in ("Open", "InProgress"):
                raise _job_error(
                    f"Job state: {job.state} is not valid for deleting the job",
                    "INVALIDJOBSTATE",
                    409,
                )
            del self.jobs[job.id]

    # ----------------------------------------------------------- results
    def ingest_results(self, job_id: str, which: str) -> str:
        """A results CSV of an ingest job: ``successful``, ``failed`` or ``unprocessed``."""
        with self.store.lock:
            job = self.job("ingest", job_id)
            header = job.header
            if not header and job.data is not None:
                header, _ = self._parse(job)
            if which == "successful":
                return _results_csv(job, ["sf__Id", "sf__Created"], header, job.successful)
            if which == "failed":
                return _results_csv(job, ["sf__Id", "sf__Error"], header, job.failed)
            return _results_csv(job, [], header, job.unprocessed)

    def query_results(
        self, job_id: str, locator: str | None, max_records: int | None
    ) -> tuple[str, str, int]:
        """``(csv, next locator or "null", number of records)`` of a query job's page."""
        with self.store.lock:
            job = self.job("query", job_id)
            if job.state != "JobComplete":
                raise _job_error(
                    f"Results are not available: job state is {job.state}", "API_ERROR"
                )
            start = 0
            if locator:
                try:
                    start = int(base64.urlsafe_b64decode(locator + "=" * (-len(locator) % 4)))
                except (ValueError, binascii.Error):
                    raise _job_error(f"Invalid locator: {locator}", "INVALIDLOCATOR") from None
            rows = job.result_rows
            end = len(rows) if not max_records else min(len(rows), start + max_records)
            page = rows[start:end]
            out = io.StringIO()
            writer = csv.writer(
                out, delimiter=job.delimiter, lineterminator=job.newline, quoting=csv.QUOTE_ALL
            )
            writer.writerow(job.result_header)
            writer.writerows(page)
            if end < len(rows):
                next_locator = base64.urlsafe_b64encode(str(end).encode()).decode().rstrip("=")
            else:
                next_locator = "null"
            return out.getvalue(), next_locator, len(page)

    # -------------------------------------------------------- processing
    def _advance(self, job: Job) -> None:
        """Move a job on: an uploaded ingest job is processed once its delay has passed."""
        if job.state not in ("UploadComplete", "InProgress"):
            return
        if time.monotonic() < job.ready_at:
            job.state = "InProgress"
            return
        if job.kind == "query":
            job.state = "JobComplete"
            job.processed = len(job.result_rows)
        else:
            self._process(job)
        job.modstamp = sf_datetime(datetime.now(UTC))

    def _parse(self, job: Job) -> tuple[list[str], list[list[str]]]:
        reader = csv.reader(io.StringIO(job.data or "", newline=""), delimiter=job.delimiter)
        rows = [row for row in reader if row]
        if not rows:
            return [], []
        return rows[0], rows[1:]

    def _process(self, job: Job) -> None:
        started = time.perf_counter()
        if job.data is None:
            job.state = "Failed"
            job.error_message = "InvalidBatch : Failed to process the job: no data was uploaded"
            return
        header, rows = self._parse(job)
        job.header = header
        sobject = self.store.sobject(job.object)
        columns: list[tuple[str, Field, str | None]] = []  # (header, field, parent ext)
        for name in header:
            head, dot, tail = name.partition(".")
            if dot:
                lookup = sobject.relationship(head)
                if lookup is None or "." in tail:
                    return self._fail(job, f"InvalidBatch : Field name not found : {name}")
                columns.append((name, lookup, tail))
                continue
            f = sobject.field(name)
            if f is None:
                return self._fail(job, f"InvalidBatch : Field name not found : {name}")
            columns.append((name, f, None))
        if job.operation in ("delete", "hardDelete") and not any(
            f.name == "Id" and p is None for _, f, p in columns
        ):
            return self._fail(job, "InvalidBatch : The 'Id' field is required for delete")
        seen_external: set[str] = set()
        for row in rows:
            if len(row) < len(header):
                row = row + [""] * (len(header) - len(row))
            try:
                record_id, created = self._row(job, columns, row, seen_external)
            except ApiError as exc:
                first = exc.errors[0]
                fields = ",".join(first.get("fields") or [])
                message = f"{first['errorCode']}:{first['message']}:{fields} --".replace(
                    ": --", ":--"
                )
                record_id = exc.record_id
                job.failed.append([record_id, message, *row])
            else:
                job.successful.append([record_id, "true" if created else "false", *row])
            job.processed += 1
        job.state = "JobComplete"
        job.processing_ms = max(1, int((time.perf_counter() - started) * 1000))

    def _fail(self, job: Job, message: str) -> None:
        job.state = "Failed"
        job.error_message = message

    def _row(
        self,
        job: Job,
        columns: list[tuple[str, Field, str | None]],
        row: list[str],
        seen_external: set[str],
    ) -> tuple[str, bool]:
        store = self.store
        values: dict[str, Any] = {}
        record_id = ""
        for (_name, f, parent_ext), cell in zip(columns, row, strict=False):
            if f.name == "Id" and parent_ext is None:
                record_id = cell
                continue
            if cell == "" and job.operation != "insert":
                continue  # an empty cell leaves the field as it is
            if parent_ext is not None:
                if cell:
                    values[f.name] = store.resolve_parent(f, parent_ext, cell)
                continue
            values[f.name] = cell
        operation = job.operation
        if operation in ("delete", "hardDelete"):
            if not record_id:
                raise ApiError.one(400, "MISSING_ARGUMENT", "Id not specified in a delete call", [])
            return self._by_id(
                record_id,
                lambda: store.delete(job.object, record_id, hard=operation == "hardDelete"),
            ), False
        if operation == "update":
            if not record_id:
                raise ApiError.one(
                    400, "MISSING_ARGUMENT", "Id not specified in an update call", []
                )
            return self._by_id(
                record_id, lambda: store.update(job.object, record_id, values, from_csv=True)
            ), False
        if operation == "insert":
            values = {k: v for k, v in values.items() if v != ""}
            if record_id:
                values["Id"] = record_id
            return store.create(job.object, values, from_csv=True), True
        # upsert
        ext = job.external_id_field or "Id"
        key = record_id if ext == "Id" else values.pop(ext, "")
        if not key:
            raise ApiError.one(400, "MISSING_ARGUMENT", f"{ext} not specified", [])
        if key.casefold() in seen_external:
            raise ApiError.one(
                400, "DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {key}", [ext]
            )
        seen_external.add(key.casefold())
        try:
            return store.upsert(job.object, ext, key, values, from_csv=True)
        except MultipleMatches as exc:
            raise ApiError.one(
                300,
                "DUPLICATE_EXTERNAL_ID",
                f"more than one record found for external id field: [{', '.join(exc.ids)}]",
                [],
            ) from None

    def _by_id(self, record_id: str, change: Callable[[], str]) -> str:
        """Run a change of an existing record; errors carry the id for the sf__Id column."""
        try:
            return str(change())
        except ApiError as exc:
            if exc.status == 404:
                first = exc.errors[0]
                if first["errorCode"] == "ENTITY_IS_DELETED":
                    exc = ApiError.one(400, "ENTITY_IS_DELETED", "entity is deleted", [])
                else:
                    exc = ApiError.one(
                        400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []
                    )
            exc.record_id = record_id
            raise exc from None


def _flat(record: dict[str, Any], path: str) -> Any:
    """A projected record's value at ``Parent.Field`` or ``Field``."""
    head, dot, tail = path.partition(".")
    if not dot:
        return record.get(head)
    parent = record.get(head)
    return None if parent is None else parent.get(tail)


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


def _results_csv(job: Job, extra: list[str], header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=job.delimiter, lineterminator="\n")
    if not header and not extra:
        return ""
    quoted = job.delimiter.join(_quote(name) for name in extra)
    lead = quoted + job.delimiter if extra else ""
    out.write(lead)
    writer.writerow(header)
    for row in rows:
        if extra:
            out.write(job.delimiter.join(_quote(cell) for cell in row[: len(extra)]))
            out.write(job.delimiter)
        writer.writerow(row[len(extra) :])
    return out.getvalue()
