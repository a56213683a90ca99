# The README's commands. Everything runs inside .venv, made by `make install`.
export RASA_TELEMETRY_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
VENV := .venv/bin

.PHONY: install llm chat serve test test-fast lint bench lock

# The engine and Rasa (.venv), then the local LLM for CPU-only machines (.venv-llm + demo model).
# BOT_SKIP_LLM=1 leaves the local LLM out (when endpoints.yml points llm.url at your own server).
install:
	scripts/install.sh
	if [ "$${BOT_SKIP_LLM:-0}" != "1" ]; then scripts/install_llm.sh; fi

# The local LLM alone (own environment + demo model, about 5 minutes; a rerun skips what is done).
llm:
	scripts/install_llm.sh

# Chat in this terminal: trains and ingests if needed, starts the LLM and the action server.
# NO_LLM=1 runs without an LLM (answers list their sources).
chat:
	$(VENV)/bot chat $(if $(NO_LLM),--no-llm)

# The same, serving Rasa's REST and socket.io channels on port 5005 instead of a shell.
serve:
	$(VENV)/bot serve $(if $(NO_LLM),--no-llm)

test:
	$(VENV)/python -m pytest

# The lint gate CI runs before the tests (rules in pyproject.toml).
lint:
	$(VENV)/ruff check .

# The tests that need no Rasa model, LLM server, PostgreSQL or browser (markers set in tests/conftest.py).
test-fast:
	$(VENV)/python -m pytest -q -m "not rasa and not llm and not postgres and not browser"

bench:
	$(VENV)/python bench/retrieval.py
	$(VENV)/python bench/ingest.py
	$(VENV)/python bench/ttft.py
	$(VENV)/python bench/traces.py

# Re-resolve the pinned environment after editing requirements/*.txt.
lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install -r requirements/rasa-deps.txt -r requirements/engine.txt
	{ head -2 requirements/lock.txt; .lock-venv/bin/pip freeze --all | grep -v -E "^(pip)=="; } > requirements/lock.new
	mv requirements/lock.new requirements/lock.txt && rm -rf .lock-venv
