# The two commands: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
CHAOS_SECONDS ?= 30

.PHONY: install run test test-recipe test-django6 test-postgres services-stop print-python312 lint messages bench chaos clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.10+ is required") if sys.version_info < (3, 10) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	mkdir -p var
	$(PY) manage.py cells_oidc_keygen var/signing-key.pem --if-missing
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable
	$(PY) manage.py loaddata default_clients
	$(PY) manage.py cells_oidc_demo_user
	$(PY) manage.py collectstatic --noinput --verbosity 0
	CELLS_OIDC_SITE_URL=$${CELLS_OIDC_SITE_URL:-http://$(HOST):$(PORT)} $(PY) manage.py runserver $(HOST):$(PORT)

test: install
	$(PY) -m ruff check .
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest
	$(PY) -m pytest -p no:cacheprovider --ds=tests.mounted.settings tests/mounted/mounted_site.py

# README's "Mount it in your Django site" word for word: the wheel in a fresh virtualenv, a fresh
# startproject site, the README's blocks, a sign-in with Authlib (tests/test_recipe.py; needs PyPI).
test-recipe: install
	CELLS_OIDC_TEST_RECIPE=1 $(PY) -m pytest -p no:cacheprovider tests/test_recipe.py

# The whole suite on PostgreSQL + Redis: throw-away servers on loopback (scripts/services.sh; needs
# Debian's postgresql and redis-server), or the ones DATABASE_URL and REDIS_URL name.
test-postgres: install
	$(PY) -m pip install --quiet -e '.[test,postgres]'
	@if [ -z "$$DATABASE_URL" ]; then services=$$(scripts/services.sh start) || exit 1; eval "$$services"; fi; \
	  case "$$DATABASE_URL" in postgres*) ;; *) echo "test-postgres: DATABASE_URL is not a PostgreSQL URL" >&2; exit 1;; esac; \
	  echo "== the suite on $$DATABASE_URL and $$REDIS_URL"; \
	  $(PY) -m pytest -p no:cacheprovider && \
	  $(PY) -m pytest -p no:cacheprovider --ds=tests.mounted.settings tests/mounted/mounted_site.py

services-stop:
	scripts/services.sh stop

# Django 6 needs Python 3.12+: the suite again in a second venv (CI runs it when one is found).
PYTHON312 ?= $(shell for p in $$HOME/.pyenv/versions/3.1[2-9]*/bin/python python3.13 python3.12; do \
	  "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo "$$p"; break; }; done)
print-python312:
	@echo "$(PYTHON312)"

test-django6:
	test -n "$(PYTHON312)" || { echo "no Python 3.12+ found for Django 6"; exit 1; }
	test -x .venv-django6/bin/python || $(PYTHON312) -m venv .venv-django6
	.venv-django6/bin/python -m pip install --quiet --upgrade pip
	.venv-django6/bin/python -m pip install --quiet -e '.[test]' 'Django>=6,<7'
	.venv-django6/bin/python -m pytest -p no:cacheprovider --ignore=tests/browser
	.venv-django6/bin/python -m pytest -p no:cacheprovider --ds=tests.mounted.settings tests/mounted/mounted_site.py

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Regenerate the translation catalogues from the package's sources and templates (only cells_oidc/,
# never the venv), then compile them; needs GNU gettext (apt-get install gettext). docs/i18n.md.
LOCALES ?= fr de es it
messages: install
	cd cells_oidc && ../$(PY) ../manage.py makemessages --no-obsolete $(addprefix -l ,$(LOCALES))
	cd cells_oidc && ../$(PY) ../manage.py compilemessages $(addprefix -l ,$(LOCALES))

# The hot paths under gunicorn (2 workers, DEBUG off) as ratios to a trivial view, with targets,
# errors and SQL statements per path (docs/performance.md); not part of `make test`. On the
# PostgreSQL (and Redis) of DATABASE_URL (REDIS_URL) when set, else a file SQLite. BENCH_P4_ROWS
# (default 1000000) scales P4's stored sign-ins down for a quick run; BENCH_ARGS e.g. --seconds 3.
bench: install
	@if [ -n "$$DATABASE_URL" ]; then $(PY) -m pip install --quiet -e '.[test,postgres]'; fi
	$(PY) bench/run.py $(BENCH_ARGS)

# Two gunicorn workers under mixed traffic for CHAOS_SECONDS (default 30): counts 5xx and lost tokens
# (docs/deploy.md). On DATABASE_URL/REDIS_URL when set, else a file SQLite and the database cache.
chaos: install
	$(PY) bench/chaos.py --seconds $(CHAOS_SECONDS)

clean:
	rm -rf $(VENV) .venv-django6 .pytest_cache var
