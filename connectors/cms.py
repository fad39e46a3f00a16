"""The base of content-management connectors: WordPress first, Strapi or Ghost next.

A CMS client offers the same operations on every system, on *collections* of
content (WordPress's ``posts``, ``pages`` or a custom post type's REST base;
a Strapi collection type; Ghost's ``posts``)::

    site = ctx.connector("site")                      # a CmsClient
    post = site.create_item("posts", slug="summer-sale", title="Summer sale",
                            content="...", status="publish")
    site.update_item("posts", post["id"], title="Summer sale, extended")
    for item in site.list_items("posts", status="draft"):
        ...
    site.find_item("posts", slug="summer-sale")       # None when there is none
    site.delete_item("posts", post["id"])             # to the trash, where there is one
    image = site.upload_media("banner.png", data, "image/png")

**Idempotency without an Idempotency-Key header.** A CMS does not deduplicate
creates, so :meth:`CmsClient.create_item` looks first and creates only when
nothing is there, by a stable key:

- the ``slug`` when the step gives one: the item with that slug is returned
  as it is (not updated), and no second one is made;
- else the ``key`` the flow gives, or the step's own key
  (:meth:`~connectors.base.Bound.idempotency_key`: the same on every attempt,
  ``KEY-2``, ``KEY-3`` ... for a step's later creates), which the create stores
  in a field of the item (WordPress: a post meta field) and the lookup matches.

The lookup and the create are retried *as one*: after a timeout or a 5xx the
connector looks again before it sends the create again, so a create whose
answer was lost is found rather than repeated. Two workers creating the same
item at the same instant are not covered (no CMS here has a unique constraint
to lean on); a step runs on one worker at a time, which is the case that matters.

A CMS module (``connectors.wordpress``) subclasses :class:`CmsClient` together
with its HTTP client, implements the primitives marked abstract, and gets
:meth:`~CmsClient.create_item`, :meth:`~CmsClient.ensure` and
:meth:`~CmsClient.retried_as_one` from here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from connectors.base import Bound, Retry, retrying
from hub.errors import BusinessError, TransientError

T = TypeVar("T")
#: one item of content as the CMS shows it (a JSON object)
Item = dict[str, Any]


class CmsError(BusinessError):
    """A refusal by the CMS, carrying its own error ``code`` (``rest_invalid_param``),
    the HTTP ``status`` and the rest of its error ``data``; a :class:`BusinessError`."""

    def __init__(
        self, message: str, *, code: str, status: int | None = None, data: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.data = data


class CmsClient(Bound, ABC):
    """What every CMS client offers a step; see the module's docstring.

    Subclasses implement the primitives (``list_items`` ... ``upload_media`` and
    ``single_tries``); :meth:`create_item` is the idempotent create built on them.
    """

    # ------------------------------------------------------------ primitives
    @abstractmethod
    def list_items(self, collection: str, **filters: Any) -> Iterator[Item]:
        """Every item of ``collection`` matching ``filters``, across all pages."""

    @abstractmethod
    def get_item(self, collection: str, item_id: int | str) -> Item:
        """One item by id; a :class:`CmsError` when there is none."""

    @abstractmethod
    def find_item(self, collection: str, *, slug: str) -> Item | None:
        """The item with ``slug``, drafts included (not trashed ones); None if none."""

    @abstractmethod
    def find_by_key(self, collection: str, key: str, fields: dict[str, Any]) -> Item | None:
        """The item an earlier :meth:`insert_item` stored ``key`` on; None if none.
        ``fields`` are the create's fields, to narrow the search (a title)."""

    @abstractmethod
    def insert_item(self, collection: str, fields: dict[str, Any], *, key: str | None) -> Item:
        """Create one item with ``fields`` and, when given, ``key`` stored on it; no lookup."""

    @abstractmethod
    def update_item(self, collection: str, item_id: int | str, **fields: Any) -> Item:
        """Change the given fields of one item; the item as it is now."""

    @abstractmethod
    def delete_item(
        self,
        collection: str,
        item_id: int | str,
        *,
        force: bool = False,
        missing_ok: bool = False,
    ) -> Item | None:
        """Delete one item (to the trash unless ``force``)."""

    @abstractmethod
    def upload_media(self, filename: str, data: bytes, content_type: str, **fields: Any) -> Item:
        """Upload a file to the media library; the media item."""

    @abstractmethod
    def single_tries(self) -> AbstractContextManager[None]:
        """A block in which each HTTP call is tried once (no retries inside the
        call), so :meth:`retried_as_one` can retry a sequence of calls as a whole."""

    # ------------------------------------------------------------- the rule
    def create_item(
        self,
        collection: str,
        *,
        slug: str | None = None,
        key: str | None = None,
        **fields: Any,
    ) -> Item:
        """Create an item unless it is already there (see the module's docstring).

        ``slug`` given: the item with that slug is returned if there is one.
        Otherwise ``key`` (else the step's idempotency key) is looked up and stored
        with the new item. Without a step (``ctx`` None) and without ``slug`` or
        ``key``, the create is made as asked, with no lookup::

            site.create_item("posts", slug="q3-report", title="Q3", status="publish")
            site.create_item("posts", title="Draft notes", key=f"notes-{order_id}")
        """
        key = self.idempotency_key(key)
        if slug is not None:
            fields["slug"] = slug

        def existing() -> Item | None:
            if slug is not None:
                return self.find_item(collection, slug=slug)
            if key is not None:
                return self.find_by_key(collection, key, fields)
            return None

        return self.ensure(existing, lambda: self.insert_item(collection, dict(fields), key=key))

    def ensure(self, lookup: Callable[[], T | None], make: Callable[[], T]) -> T:
        """``lookup()``'s answer, else ``make()``'s, retried together as one
        (:meth:`retried_as_one`): a ``make`` whose answer was lost is found by the
        next ``lookup`` rather than made twice."""

        def once() -> T:
            found = lookup()
            return found if found is not None else make()

        return self.retried_as_one(once)

    def retried_as_one(self, call: Callable[[], T]) -> T:
        """Run ``call`` with single tries; on a :class:`TransientError` wait (the
        connection's backoff, or ``Retry-After``) and run all of it again, up to
        the connection's ``retries`` (:func:`connectors.base.retrying`)."""

        def attempt() -> T:
            try:
                with self.single_tries():
                    return call()
            except TransientError as exc:
                raise Retry(exc) from exc.__cause__

        return retrying(self.config, attempt)
