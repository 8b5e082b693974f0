"""The service layer: settings, the database (tables, migrations, sessions), stored reports and
their queries, job submission and typed job payloads, audit datasets and summaries, API keys and
idempotent requests.

Every process of the service (the API, the workers, the reconciler, `driftscope audit`) uses it.
It imports the core library (`diagnostics`) and nothing above it: no `workers`, no `api`, no
FastAPI or Celery.
"""
