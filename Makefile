# Two commands: `make run` and `make test`. Each does all set-up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE ?= sample

.PHONY: setup run test simulate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch and torchvision first, pinned: they install from local files here.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The console is tested in a real headless Chromium (Debian's; never `playwright install`).
# Without root or apt the browser test skips and says why.
BROWSER := /usr/bin/chromium
$(BROWSER):
	-(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1

setup: $(STAMP) $(BROWSER)

# Until the inspection service exists: simulate a small sample dataset and summarise it.
run: setup
	rm -rf $(SAMPLE)
	$(BIN)/xray simulate --out $(SAMPLE) --count 24 --seed 0 --workers 2
	$(BIN)/python -m xray.simulate.gallery $(SAMPLE) --out $(SAMPLE)/gallery.png

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(SAMPLE) .pytest_cache
