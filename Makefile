# Two entry points do all set-up on a fresh machine (see README):
#   make run    create .venv if missing, then open lic-studio on the bundled default image
#   make test   create .venv if missing, then run the test suite
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test venv

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/lic-studio $(ARGS)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)
