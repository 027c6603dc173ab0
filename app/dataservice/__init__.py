"""The reference data service: Turnstile's users on SQLite behind the HTTP API of contract §7.

Turnstile itself owns no database and only ever talks to this over HTTP, whether it runs on
its own (`turnstile dataservice`) or embedded on a loopback port (`turnstile serve` without
`DATA_SERVICE_URL`).
"""

from app.dataservice.main import create_dataservice_app, run_dataservice, start_dataservice

__all__ = ["create_dataservice_app", "run_dataservice", "start_dataservice"]
