"""Reminder mails in Swedish before a grant ends (docs/events.md, "Reminder mails")."""
from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import date, datetime, timezone
from urllib.parse import unquote, urlsplit

import psycopg

from service.events.outcome import Outcome
from service.platform import db
from service.platform.config import Settings
from service.platform.observability import scrub_text

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
MONTHS = ("januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september",
          "oktober", "november", "december")


def swedish_date(day: date) -> str:
    """`28 november 2028`, as a Swedish reader writes a date."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def compose(settings: Settings, *, to: str, first_name: str | None, competence: str, valid_to: date,
            courses: list[str], webhook_id: str) -> EmailMessage:
    """The reminder for one grant: the competence, its end date and the courses that renew it."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = f"Påminnelse: din kompetens {competence} går ut {swedish_date(valid_to)}"
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    # The same notice gives the same Message-ID: a mail sent twice (a crash after the server
    # took it) is one mail to a client that deduplicates.
    message["Message-ID"] = f"<{webhook_id}@competence-bridge>"
    greeting = f"Hej {first_name}!" if first_name else "Hej!"
    lines = [greeting, "",
             f"Din kompetens {competence} gäller till och med {swedish_date(valid_to)} ({valid_to.isoformat()}).",
             ""]
    if courses:
        lines.append("Du förnyar den genom att genomföra någon av de här kurserna:")
        lines += [f"  - {name}" for name in courses]
    else:
        lines.append("Ingen kurs är just nu kopplad till kompetensen; kontakta din chef om hur du förnyar den.")
    lines += ["", "Det här är ett automatiskt meddelande och går inte att svara på."]
    message.set_content("\n".join(lines) + "\n", charset="utf-8")
    return message


def send_message(settings: Settings, message: EmailMessage) -> None:
    """Hand one message to the server of SMTP_URL (smtps: TLS from the start, with login)."""
    parts = urlsplit(settings.smtp_url)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if parts.scheme == "smtps":
        context = ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle \
            else ssl.create_default_context()
        client = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=TIMEOUT_S, context=context)
    else:
        client = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=TIMEOUT_S)
    with client:
        if user:
            client.login(user, password or "")
        client.send_message(message)


def send_reminder(conn: psycopg.Connection, settings: Settings, row: dict) -> Outcome:
    """Send the reminder of one grant.expiring delivery; return its Outcome."""
    if not settings.smtp_url:
        return Outcome(False, None, "SMTP_URL is not set in this process")
    grant = row["body"]["data"]["grant"]
    person = conn.execute(db.q("mail_recipient"), {"employee_id": grant["employee_id"]}).fetchone()
    to = (person["email"] if person else grant.get("employee_email") or "").strip()
    if not to:
        return Outcome(False, None, "the employee has no email")
    courses = [r["name"] for r in conn.execute(db.q("mail_renewing_courses"),
                                               {"competence_id": grant["competence_id"]}).fetchall()]
    message = compose(settings, to=to, first_name=person["first_name"] if person else None,
                      competence=grant["competence_name"] or "", valid_to=date.fromisoformat(grant["valid_to"]),
                      courses=courses, webhook_id=row["webhook_id"])
    try:
        send_message(settings, message)
    except (smtplib.SMTPException, OSError) as exc:
        # An SMTP error may quote the recipient: the log keeps it masked.
        return Outcome(False, getattr(exc, "smtp_code", None),
                       scrub_text(f"{exc.__class__.__name__}: {exc}")[:500])
    return Outcome(True, 250)
