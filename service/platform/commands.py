"""What every `competence-bridge` sub-command shares: settings, the database, refusals."""
from __future__ import annotations

import click

from service.platform import config as config_mod


class Refused(click.ClickException):
    """A request the rules refuse: one line on standard error, exit status 2 (docs/processes.md)."""

    exit_code = 2


def settings() -> config_mod.Settings:
    """Load the settings, or stop the command with the message that names the variable."""
    try:
        return config_mod.load()
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def serve_metrics(role: str) -> None:
    """Serve this process's counters on METRICS_PORT (deploy/README.md, "Metrics")."""
    from service.platform.metrics import serve_metrics as serve

    try:
        serve(config_mod.metrics_port(role))
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def database_url(settings: config_mod.Settings) -> str:
    """DATABASE_URL, or the embedded PostgreSQL (started or joined)."""
    from service.platform import db

    return db.database_url(settings)
