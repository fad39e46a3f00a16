"""A Salesforce org on https://127.0.0.1 for tests and benchmarks: OAuth, REST, SOQL, Bulk 2.0.

:class:`SalesforceSandbox` serves HTTPS (a ``trustme`` CA; clients pass
:attr:`~SalesforceSandbox.ca_path` as ``verify=``) from uvicorn in a thread
of the test process, or alone with ``python -m tests.sandbox.salesforce``.
Shapes, status codes and error bodies follow Salesforce's REST API.

Endpoints (``vNN.N`` is any API version; a trailing slash is optional)::

    POST   /services/oauth2/token                     password, client_credentials, JWT bearer
    GET    /id/{orgId}/{userId}                       the identity URL of a token
    GET    /services/data/                            API versions (no token needed)
    GET    /services/data/vNN.N/                      resources of a version
    GET    /services/data/vNN.N/limits                DailyApiRequests, DataStorageMB, ...
    GET    /services/data/vNN.N/query?q=SOQL          pages of 2,000 (Sforce-Query-Options:
    GET    /services/data/vNN.N/queryAll?q=SOQL         batchSize=200..2000), deleted rows too
    GET    /services/data/vNN.N/query/01g...-2000     the next page (nextRecordsUrl)
    GET    /services/data/vNN.N/sobjects              global describe
    GET    /services/data/vNN.N/sobjects/{Obj}        object summary and recent items
    POST   /services/data/vNN.N/sobjects/{Obj}        create: 201 {"id", "success", "errors"}
    GET    /services/data/vNN.N/sobjects/{Obj}/describe
    GET    /services/data/vNN.N/sobjects/{Obj}/{Id}   [?fields=A,B]
    PATCH  /services/data/vNN.N/sobjects/{Obj}/{Id}   update: 204
    DELETE /services/data/vNN.N/sobjects/{Obj}/{Id}   delete: 204
    GET    /services/data/vNN.N/sobjects/{Obj}/{ExtField}/{value}
    PATCH  /services/data/vNN.N/sobjects/{Obj}/{ExtField}/{value}
               upsert: 201 {"id", "success", "errors", "created": true} when it creates,
               200 {... "created": false} when it updates (204 before v46.0),
               300 [record URLs] when several records match
    DELETE /services/data/vNN.N/sobjects/{Obj}/{ExtField}/{value}
    POST   /services/data/vNN.N/jobs/ingest           Bulk 2.0 ingest job (insert, update,
    GET    /services/data/vNN.N/jobs/ingest             upsert, delete, hardDelete)
    GET    /services/data/vNN.N/jobs/ingest/{id}      job info
    PATCH  /services/data/vNN.N/jobs/ingest/{id}      {"state": "UploadComplete" | "Aborted"}
    DELETE /services/data/vNN.N/jobs/ingest/{id}
    PUT    /services/data/vNN.N/jobs/ingest/{id}/batches             the CSV: 201
    GET    /services/data/vNN.N/jobs/ingest/{id}/successfulResults   sf__Id, sf__Created, ...
    GET    /services/data/vNN.N/jobs/ingest/{id}/failedResults       sf__Id, sf__Error, ...
    GET    /services/data/vNN.N/jobs/ingest/{id}/unprocessedrecords
    POST   /services/data/vNN.N/jobs/query            Bulk 2.0 query job (query, queryAll)
    GET    /services/data/vNN.N/jobs/query[/{id}]
    PATCH  /services/data/vNN.N/jobs/query/{id}       {"state": "Aborted"}
    DELETE /services/data/vNN.N/jobs/query/{id}
    GET    /services/data/vNN.N/jobs/query/{id}/results?maxRecords=N&locator=L
               CSV; Sforce-Locator (``null`` on the last page), Sforce-NumberOfRecords

Every data API request needs ``Authorization: Bearer <token>`` (or
``OAuth``); a missing, unknown or expired token is 401
``[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]``.
Answers carry ``Sforce-Limit-Info: api-usage=N/MAX``.

Objects: Account (001; Name required, External_Id__c a unique external id,
a validation rule on BillingPostalCode), Contact (003; LastName required,
Legacy_Id__c a non-unique external id), Order (801), Order__c (a01;
External_Id__c unique), and the read-only User (005) and Organization (00D).
See :mod:`.schema` for fields and error codes, :mod:`.soql` for the query
language, :mod:`.bulk` for Bulk 2.0 and :mod:`.auth` for the token flows.
"""

from __future__ import annotations

from tests.sandbox.salesforce.app import Call
from tests.sandbox.salesforce.sandbox import SalesforceSandbox
from tests.sandbox.salesforce.schema import ApiError

__all__ = ["ApiError", "Call", "SalesforceSandbox"]
