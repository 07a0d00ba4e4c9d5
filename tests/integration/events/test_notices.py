"""grant.expiring at each lead time and grant.expired, exactly once, catching up after downtime;
and the Swedish reminder mail, to a real SMTP server."""
from __future__ import annotations

from datetime import date, timedelta

from service.events.delivery import Sender, deliver_due
from tests.integration.events.conftest import with_changes
from tests.integration.events.helpers import deliveries, events, grant, seed, subscribe
from workers.scheduler import notice_expiries

END = date(2027, 6, 30)
ALL = ["grant.expiring", "grant.expired"]


def _notices(conn) -> list[tuple]:
    return [(e["type"], e["body"]["data"].get("lead_days")) for e in events(conn)]


def test_each_lead_time_once_and_expired_once_with_catch_up(conn, pool, event_settings, receiver):
    ids = seed(conn)
    subscribe(conn, event_settings, receiver, ALL)
    grant(conn, ids, valid_from="2025-07-01", valid_to=END.isoformat(), created_at="2025-07-01T10:00:00Z")

    notice_expiries(pool, event_settings, END - timedelta(days=120))  # the job's first run
    assert _notices(conn) == []
    notice_expiries(pool, event_settings, END - timedelta(days=90))
    notice_expiries(pool, event_settings, END - timedelta(days=90))  # again the same day
    notice_expiries(pool, event_settings, END - timedelta(days=60))
    assert _notices(conn) == [("grant.expiring", 90)]
    # The scheduler was down over the 30-day lead day: it catches up 5 days late, once.
    notice_expiries(pool, event_settings, END - timedelta(days=25))
    notice_expiries(pool, event_settings, END - timedelta(days=24))
    assert _notices(conn) == [("grant.expiring", 90), ("grant.expiring", 30)]
    notice_expiries(pool, event_settings, END - timedelta(days=7))
    notice_expiries(pool, event_settings, END)  # the last valid day: not expired yet
    assert _notices(conn)[-1] == ("grant.expiring", 7) and len(_notices(conn)) == 3
    # Down on the day after valid_to; back three days later.
    notice_expiries(pool, event_settings, END + timedelta(days=3))
    notice_expiries(pool, event_settings, END + timedelta(days=4))
    assert _notices(conn) == [("grant.expiring", 90), ("grant.expiring", 30), ("grant.expiring", 7),
                              ("grant.expired", None)]
    expired = events(conn)[-1]["body"]["data"]["grant"]
    assert expired["valid_to"] == END.isoformat()


def test_a_grant_created_inside_a_lead_time_gets_that_one_notice(conn, pool, event_settings, receiver):
    ids = seed(conn)
    subscribe(conn, event_settings, receiver, ALL)
    notice_expiries(pool, event_settings, END - timedelta(days=400))  # the job ran before
    grant(conn, ids, valid_from="2025-07-01", valid_to=END.isoformat())
    notice_expiries(pool, event_settings, END - timedelta(days=20))
    notice_expiries(pool, event_settings, END - timedelta(days=19))
    assert _notices(conn) == [("grant.expiring", 30)]


def test_revoked_renewed_and_historical_grants_get_no_notices(conn, pool, event_settings, receiver, database_url):
    from service.platform import db

    ids = seed(conn)
    subscribe(conn, event_settings, receiver, ALL)
    notice_expiries(pool, event_settings, END - timedelta(days=400))
    revoked = grant(conn, ids, valid_from="2025-07-01", valid_to=END.isoformat())
    conn.execute("UPDATE grants SET revoked_at = now(), revoked_reason = 'fel' WHERE id = %s", (revoked,))
    with db.connect(database_url) as c:
        # A renewed grant: the next period exists (two grants of one pair, as grant periods allow).
        c.execute("ALTER TABLE grants DROP CONSTRAINT IF EXISTS grants_employee_competence_key")
        bo = c.execute("INSERT INTO employees (email, email_normalized) VALUES ('bo@kommun.se', 'bo@kommun.se')"
                       " RETURNING id").fetchone()["id"]
        grant(c, {**ids, "employee": bo}, valid_from="2025-07-01", valid_to=END.isoformat(), result_id="a")
        grant(c, {**ids, "employee": bo}, valid_from=(END + timedelta(days=1)).isoformat(),
              valid_to=(END + timedelta(days=730)).isoformat(), result_id="b")
        notice_expiries(_OnConnection(c), event_settings, END - timedelta(days=5))
        got = _notices(c)
        c.rollback()
    assert got == [], "revoked: nothing; renewed: no grant.expiring"

    # A period a backfill records long after it ended: grant.created says expired, no grant.expired.
    grant(conn, {**ids, "competence": conn.execute(
        "INSERT INTO competences (parent_id, name, kind, default_valid_days) VALUES (%s, 'HLR barn',"
        " 'competence', 730) RETURNING id", (ids["group"],)).fetchone()["id"]},
        valid_from="2019-01-01", valid_to="2021-01-01", result_id="old")
    notice_expiries(pool, event_settings, END - timedelta(days=5))
    assert _notices(conn) == []


def test_expired_never_reaches_back_before_the_jobs_first_run(conn, pool, event_settings, receiver):
    ids = seed(conn)
    subscribe(conn, event_settings, receiver, ALL)
    grant(conn, ids, valid_from="2025-07-01", valid_to=END.isoformat(), created_at="2025-07-01T10:00:00Z")
    notice_expiries(pool, event_settings, END + timedelta(days=40))  # first run, long after
    assert _notices(conn) == []


def test_the_first_run_notices_grants_already_inside_a_lead_time(conn, pool, event_settings, receiver):
    ids = seed(conn)
    subscribe(conn, event_settings, receiver, ALL)
    grant(conn, ids, valid_from="2025-07-01", valid_to=END.isoformat(), created_at="2025-07-01T10:00:00Z")
    notice_expiries(pool, event_settings, END - timedelta(days=20))  # the job's first run
    assert _notices(conn) == [("grant.expiring", 30)]


def test_changed_lead_times_apply_from_the_next_run(conn, pool, event_settings, receiver):
    ids = seed(conn)
    subscribe(conn, event_settings, receiver, ALL)
    notice_expiries(pool, event_settings, END - timedelta(days=400))
    grant(conn, ids, valid_from="2025-07-01", valid_to=END.isoformat())
    notice_expiries(pool, event_settings, END - timedelta(days=30))
    changed = with_changes(event_settings, expiry_notice_days=(30, 14))
    notice_expiries(pool, changed, END - timedelta(days=29))
    notice_expiries(pool, changed, END - timedelta(days=14))
    notice_expiries(pool, changed, END - timedelta(days=7))
    assert _notices(conn) == [("grant.expiring", 30), ("grant.expiring", 14)]


def test_a_reminder_mail_in_swedish_once_per_grant_and_lead_time(conn, pool, event_settings, smtp_server):
    mailing = with_changes(event_settings, smtp_url=smtp_server.url, mail_from="kompetens@kommun.se")
    ids = seed(conn)
    notice_expiries(pool, mailing, END - timedelta(days=400))
    grant(conn, ids, valid_from="2025-07-01", valid_to=END.isoformat())
    sender = Sender(mailing)

    for day in (END - timedelta(days=30), END - timedelta(days=30), END - timedelta(days=29)):
        notice_expiries(pool, mailing, day)
        deliver_due(pool, sender)

    [mail] = smtp_server.messages
    assert mail["to"] == ["anna.andersson@kommun.se"] and mail["from"] == "kompetens@kommun.se"
    assert mail["subject"] == "Påminnelse: din kompetens HLR vuxen går ut 30 juni 2027"
    assert "Hej Anna!" in mail["body"]
    assert "HLR vuxen gäller till och med 30 juni 2027 (2027-06-30)" in mail["body"]
    assert "  - HLR vuxen grund" in mail["body"], "the linked course that renews it"
    [row] = deliveries(conn, None)
    assert row["channel"] == "mail" and row["state"] == "delivered"
    assert mail["message_id"] == f"<{row['webhook_id']}@competence-bridge>"

    notice_expiries(pool, mailing, END - timedelta(days=7))
    deliver_due(pool, sender)
    assert len(smtp_server.messages) == 2 and "30 juni 2027" in smtp_server.messages[1]["subject"]


def test_a_mail_server_that_is_down_is_retried(conn, pool, event_settings):
    from tests.integration.events.conftest import free_port

    down = with_changes(event_settings, smtp_url=f"smtp://127.0.0.1:{free_port()}", mail_from="k@kommun.se")
    ids = seed(conn)
    notice_expiries(pool, down, END - timedelta(days=400))
    grant(conn, ids, valid_from="2025-07-01", valid_to=END.isoformat())
    notice_expiries(pool, down, END - timedelta(days=7))
    deliver_due(pool, Sender(down))
    [row] = deliveries(conn, None)
    assert row["state"] == "pending" and row["attempts"] == 1 and "Connection" in row["last_error"]
    assert "anna" not in (row["last_error"] or "")


class _OnConnection:
    """A pool of one open connection (to run the job inside a transaction that is rolled back)."""

    def __init__(self, conn):
        self.conn = conn

    def connection(self):
        from contextlib import nullcontext

        return nullcontext(self.conn)


def test_the_demo_mail_sink_prints_each_mail_it_receives(event_settings):
    from datetime import date

    from aiosmtpd.controller import Controller

    from service.demo.mailsink import PrintingHandler
    from service.events import mail
    from tests.integration.events.conftest import free_port

    printed: list[str] = []
    port = free_port()
    controller = Controller(PrintingHandler(echo=printed.append), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        s = with_changes(event_settings, smtp_url=f"smtp://127.0.0.1:{port}", mail_from="kompetens@demo.invalid")
        mail.send_message(s, mail.compose(s, to="anna@kommun.se", first_name="Anna", competence="HLR vuxen",
                                          valid_to=date(2027, 6, 30), courses=["HLR grund"], webhook_id="msg_1"))
    finally:
        controller.stop()
    [text] = printed
    assert "Subject: Påminnelse: din kompetens HLR vuxen går ut 30 juni 2027" in text
    assert "  - HLR grund" in text and "To: a***@kommun.se" in text


def test_later_runs_of_a_day_read_only_grants_changed_since(conn, pool, event_settings, receiver):
    ids = seed(conn)
    subscribe(conn, event_settings, receiver, ALL)
    day = END - timedelta(days=20)
    grant(conn, ids, valid_from="2025-07-01", valid_to=END.isoformat(), created_at="2025-07-01T10:00:00Z")
    conn.execute("UPDATE grants SET updated_at = '2025-07-01T10:00:00Z'")
    notice_expiries(pool, event_settings, day)  # the day's first run reads every grant in a window
    assert _notices(conn) == [("grant.expiring", 30)]
    conn.execute("DELETE FROM grant_notices")  # as if it had never been noticed

    bo = conn.execute("INSERT INTO employees (email, email_normalized) VALUES ('bo@kommun.se', 'bo@kommun.se')"
                      " RETURNING id").fetchone()["id"]
    grant(conn, {**ids, "employee": bo}, valid_from="2025-07-05", valid_to=(END + timedelta(days=4)).isoformat(),
          result_id="r-bo")
    notice_expiries(pool, event_settings, day)  # later the same day: only what changed since
    assert [(e["type"], e["grant_id"]) for e in events(conn)][1:] == \
        [("grant.expiring", conn.execute("SELECT id FROM grants WHERE result_id = 'r-bo'").fetchone()["id"])]

    notice_expiries(pool, event_settings, day + timedelta(days=1))  # the next day reads them all again
    assert len(_notices(conn)) == 3
