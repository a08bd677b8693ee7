# The two commands a newcomer needs are `make run` and `make test`; both install what they
# need into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp is named by the requirements' content, so it has no prerequisites: a checkout or
# a new worktree gives the files new times, and that alone must not reinstall into .venv.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
export PYTHONPATH := shared:.

# promtool, to check and unit-test infra/alerts/ (README "Alerts"): a dev tool, never in the
# layer. Debian's prometheus package carries it; apt-get download needs no root, and the
# version is pinned so the rules are checked by the engine they were written against.
PROMTOOL := .local/bin/promtool
PROMTOOL_VERSION := 2.42.0

.PHONY: run test check migrate openapi encrypt secret-put package plan deploy clean

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(BIN)/python -m infra.local

# Where apt-get is (Debian), promtool is fetched first; where it cannot be, its tests skip,
# naming this target, unless REQUIRE_PROMTOOL=1 (.ci/run) makes them fail.
test: $(STAMP)
	@if command -v apt-get >/dev/null; then $(MAKE) -s $(PROMTOOL) || \
	  echo "make test: no promtool, so its tests skip (make $(PROMTOOL) says why)"; fi
	$(BIN)/python -m pytest --cov --cov-report=term

$(PROMTOOL):
	rm -rf .local/promtool && mkdir -p .local/promtool .local/bin
	cd .local/promtool && apt-get download -q prometheus >/dev/null || { echo \
	  "$@: apt-get could not download Debian's prometheus package (Debian 12 has it)" >&2; \
	  exit 1; }
	@got=$$(dpkg-deb -f .local/promtool/prometheus_*.deb Version); case "$$got" in \
	  $(PROMTOOL_VERSION)+*) ;; *) echo "$@: apt offers prometheus $$got, not" \
	  "$(PROMTOOL_VERSION) (PROMTOOL_VERSION in the Makefile)" >&2; exit 1;; esac
	dpkg-deb -x .local/promtool/prometheus_*.deb .local/promtool/root
	.local/promtool/root/usr/bin/promtool --version 2>&1 | grep -q "version $(PROMTOOL_VERSION)+"
	mv .local/promtool/root/usr/bin/promtool $@ && rm -rf .local/promtool

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

migrate: $(STAMP)
	$(BIN)/python -m app.db.migrate

# shared/app/api/openapi.json from the route table (a test fails while it is out of date).
openapi: $(STAMP)
	$(BIN)/python -m app.api.docs

# Seal a secret read on stdin (README "Secrets and KMS"): `make -s encrypt NAME=JWT_SECRET`
# prints one envelope line for that variable and nothing else; `make -s secret-put NAME=X`
# stores it in the secrets table through DATABASE_URL, for a variable to hold secret:X.
encrypt: $(STAMP)
	@$(BIN)/python -m infra.seal encrypt "$(NAME)"

secret-put: $(STAMP)
	@$(BIN)/python -m infra.seal put "$(NAME)"

# dist/layer/layer.zip (app/ + runtime wheels for CPython 3.10) and dist/functions/*.zip.
package: $(STAMP)
	$(BIN)/python -m infra.package

# Reconcile the account with serverless.yml (the variables: README "Deploy"), then run
# db-migrate; `make plan` shows what that would change and writes nothing.
deploy: package
	$(BIN)/python -m infra.deploy apply

plan: package
	$(BIN)/python -m infra.deploy plan

clean:
	rm -rf dist .local .pytest_cache .mypy_cache .ruff_cache .coverage
