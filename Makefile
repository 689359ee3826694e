# Claimdesk: `make demo` to try it, `make test` to test it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR := demo-data
DEMO_USERS ?= 200
DEMO_SEED ?= 7
# The demo runs with DEBUG on (no SECRET_KEY needed, plain HTTP), its e-mail links to the address
# it serves, and without the staff's second factor, so that every demo login works at once; tests
# get a throwaway key.
DEMO_ADDRESS := 127.0.0.1:8000
DEMO_ENV := DEBUG=1 STAFF_2FA=0 SITE_URL=http://$(DEMO_ADDRESS)
TEST_ENV := SECRET_KEY=$${SECRET_KEY:-test-only-not-a-secret}

.PHONY: install demo test bench lint lock clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

demo: install
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput
	test -f $(DEMO_DIR)/incident.json || \
		$(DEMO_ENV) $(BIN)/python manage.py simulate_incident $(DEMO_DIR) --users $(DEMO_USERS) --seed $(DEMO_SEED)
	$(DEMO_ENV) $(BIN)/python manage.py import_bundle $(DEMO_DIR) --by demo
	$(DEMO_ENV) $(BIN)/python manage.py load_incident $(DEMO_DIR)/incident.json --by demo
	$(DEMO_ENV) $(BIN)/python manage.py detect \
		$$($(BIN)/python -c "import json; print(json.load(open('$(DEMO_DIR)/incident.json'))['slug'])")
	$(DEMO_ENV) $(BIN)/python manage.py demo_staff
	@echo
	@echo "  Claimdesk demo:  http://127.0.0.1:8000/"
	@echo "  Staff admin:     http://127.0.0.1:8000/admin/   (logins support, approver, finance, demo;"
	@echo "                   password demo; the README walks from approval to payout)"
	@echo
	$(DEMO_ENV) $(BIN)/python manage.py runserver $(DEMO_ADDRESS)

test: install
	$(TEST_ENV) $(BIN)/python -m pytest --create-db $(PYTEST_ARGS)

bench: install
	@test -n "$$DATABASE_URL" || { echo "bench needs DATABASE_URL pointing at PostgreSQL"; exit 2; }
	$(TEST_ENV) $(BIN)/python bench/import_speed.py
	$(TEST_ENV) $(BIN)/python bench/detect_speed.py
	$(TEST_ENV) $(BIN)/python bench/intake_speed.py
	$(TEST_ENV) $(BIN)/python bench/match_speed.py
	$(TEST_ENV) $(BIN)/python bench/email_speed.py
	$(TEST_ENV) $(BIN)/python bench/payout_speed.py
	$(TEST_ENV) $(BIN)/python bench/queue_speed.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Pins every transitive dependency, with hashes, from the direct ones in requirements*.in.
lock: install
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements-dev.txt requirements-dev.in

clean:
	rm -rf $(VENV) db.sqlite3 $(DEMO_DIR)
