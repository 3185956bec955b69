# Kamidrop: `make run` serves the demo shop, `make test` runs every test.
# Both set everything up on a fresh machine (Python 3.11+, pip and make).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT
TEST_WORKERS ?= 2

.PHONY: run test bench install migrate stop clean

install: $(VENV)/.installed

# Re-install only when the declared dependencies change: a second `make run`
# skips straight to start-up.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[embedded,test]'
	@touch $@

# Starts the embedded PostgreSQL/Redis (unless DATABASE_URL/REDIS_URL are set),
# migrates, loads the demo shop, then runs the web server and one RQ worker
# with the scheduler in the foreground. Ctrl-C or SIGTERM stops all of it.
run: install
	exec $(PY) -m shop.project.devstack

# The browser tests drive Debian's Chromium; install it when missing (root in CI),
# with a small CJK font so the Chinese pages render (and their screenshots read).
# TEST_WORKERS pytest-xdist workers (each with its own test database and Redis
# db: tests/settings.py), handed tests one at a time as they free up (slow ones
# first: tests/conftest.py); TEST_WORKERS=0 runs in one process.
test: install
	@test -x /usr/bin/chromium -a -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 1 $(PYTEST_ARGS)

# The flash-sale benchmark (gunicorn, RQ workers, SMTP sink, signed EPay
# notifies); figures are appended to bench/RESULTS.md. Options: BENCH_ARGS.
bench: install
	$(PY) bench/flash_sale.py $(BENCH_ARGS)

migrate: install
	$(PY) manage.py migrate --noinput

# Stops the embedded servers if something left them running.
stop: install
	$(PY) -m shop.project.embedded stop

clean: stop
	rm -rf .data
