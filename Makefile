# The two commands: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint bench clean

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
	$(PY) manage.py loaddata default_clients
	$(PY) manage.py cells_oidc_demo_user
	$(PY) manage.py runserver $(HOST):$(PORT)

test: install
	$(PY) -m ruff check .
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest
	$(PY) -m pytest -p no:cacheprovider --ds=tests.mounted.settings tests/mounted/mounted_site.py

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache var
