"""The servers a bench run uses (this machine's PostgreSQL and RabbitMQ) and its webhook secret."""
from __future__ import annotations

import base64
import os

ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
SECRET = "whsec_" + base64.b64encode(b"secret-of-the-competence-bridge-bench").decode()
HOST = "127.0.0.1"
