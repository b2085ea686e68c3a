# The two commands (see README): `make run` and `make test`.
.PHONY: run test test-fast test-postgres setup lint models lock

run:
	scripts/run.sh

test:
	scripts/test.sh

# The lane to run often: no inference engine, no browser.
test-fast:
	scripts/test.sh -m "not worker and not browser"

setup:
	scripts/setup.sh

models:
	.venv/bin/python -m inference_worker.local_models build

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports

# Re-resolve requirements-cpu.lock from the top-level requirements files.
lock:
	scripts/lock.sh

# The suite on PostgreSQL (a throwaway local cluster) instead of SQLite.
test-postgres:
	scripts/test-postgres.sh
