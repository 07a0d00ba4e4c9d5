"""A local SMTP server that prints each mail it receives: the demo's mailbox (docs/events.md)."""
from __future__ import annotations

import email
import signal
import threading
from email import policy

import logging

import click

from service.platform.observability import mask_email


class PrintingHandler:
    """Print sender, recipients, subject and the plain-text body of each mail, decoded."""

    def __init__(self, echo=click.echo):
        self.echo = echo

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        body = message.get_body(("plain",))
        self.echo("\n".join([
            "----- mail -----",
            f"From: {envelope.mail_from}",
            f"To: {', '.join(mask_email(r) for r in envelope.rcpt_tos)}",
            f"Subject: {str(message['subject'] or '').strip()}",
            "",
            body.get_content().rstrip() if body is not None else "(no text part)",
            "----------------",
        ]))
        return "250 OK"


@click.command("mail-sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8025, show_default=True)
def mail_sink(host: str, port: int) -> None:
    """Receive mails over SMTP and print them (the demo's reminder mails); nothing is relayed."""
    from aiosmtpd.controller import Controller  # the demo and the tests install it

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
    controller = Controller(PrintingHandler(), hostname=host, port=port)
    controller.start()
    click.echo(f"mail sink listening on smtp://{host}:{port}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.is_set():
            stop.wait(1.0)
    finally:
        controller.stop()
