"""Undo the review queue bench's actions, so a rerun with ``--reuse`` finds the same queue.

Actions (claim, comment, retry) change items, their steps and runs, and add
comments, events and audit rows. :class:`Snapshot` copies the rows they may
change into ``bench_snapshot_*`` tables of the bench's own database first, and
afterwards puts them back and deletes what was added; a run that died half
way is undone at the start of the next one. The tables put back are vacuumed,
as the loader leaves them.
"""

from __future__ import annotations

import psycopg

from hub.models import utcnow

SNAPSHOT = (  # table, the ids of its rows the actions may change
    ("review_items", "SELECT id FROM review_items WHERE id = ANY(%(ids)s)"),
    ("steps", "SELECT step_id FROM review_items WHERE id = ANY(%(ids)s)"),
    ("runs", "SELECT run_id FROM review_items WHERE id = ANY(%(ids)s)"),
)
MARKS = "bench_snapshot_marks"


class Snapshot:
    """The rows the bench's actions change, copied aside first and put back afterwards.

    The copies live in ``bench_snapshot_*`` tables of the bench's database, so
    a run that died half way is undone at the start of the next one.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def take(self, item_ids: list[str]) -> None:
        with psycopg.connect(self.url) as conn, conn.transaction():
            for table, ids in SNAPSHOT:
                conn.execute(
                    f"CREATE TABLE bench_snapshot_{table} AS SELECT * FROM {table} "
                    f"WHERE id IN ({ids})",
                    {"ids": item_ids},
                )
            conn.execute(
                f"CREATE TABLE {MARKS} AS SELECT "
                "(SELECT coalesce(max(id), 0) FROM events) AS events, "
                "(SELECT coalesce(max(id), 0) FROM audit_log) AS audit, "
                "%(t0)s::timestamp AS t0",
                {"t0": utcnow()},
            )

    def restore(self) -> bool:
        """Put the copied rows back and delete what the actions added; False if none."""
        with psycopg.connect(self.url) as conn, conn.transaction():
            found = conn.execute("SELECT to_regclass(%s)", (MARKS,)).fetchone()
            if found is None or found[0] is None:
                return False
            for table, _ in SNAPSHOT:
                cols = [
                    c
                    for (c,) in conn.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = %s AND column_name <> 'id' ORDER BY ordinal_position",
                        (table,),
                    ).fetchall()
                ]
                names = ", ".join(f'"{c}"' for c in cols)
                values = ", ".join(f's."{c}"' for c in cols)
                conn.execute(
                    f"UPDATE {table} t SET ({names}) = ({values}) "
                    f"FROM bench_snapshot_{table} s WHERE t.id = s.id"
                )
            conn.execute(
                "DELETE FROM review_comments WHERE item_id IN "
                f"(SELECT id FROM bench_snapshot_review_items) "
                f"AND created_at >= (SELECT t0 FROM {MARKS})"
            )
            conn.execute(f"DELETE FROM events WHERE id > (SELECT events FROM {MARKS})")
            conn.execute(f"DELETE FROM audit_log WHERE id > (SELECT audit FROM {MARKS})")
            conn.execute("DELETE FROM api_tokens")
            conn.execute("DELETE FROM web_sessions")
            for table, _ in SNAPSHOT:
                conn.execute(f"DROP TABLE bench_snapshot_{table}")
            conn.execute(f"DROP TABLE {MARKS}")
        # as autovacuum would in time: the rewritten pages are all-visible again, so the
        # next run's index-only scans read no more table pages than the first run's did
        with psycopg.connect(self.url, autocommit=True) as conn:
            for table in (*(t for t, _ in SNAPSHOT), "review_comments", "events", "audit_log"):
                conn.execute(f"VACUUM (ANALYZE) {table}")
        return True
