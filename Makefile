# The two commands of the README: `make train` (the main job) and `make test`.
# Both install first; the install step is skipped once done (stamp file).
PYTHON ?= python3

.PHONY: install train test lint

.install-stamp: pyproject.toml
	@# torch first: a CPU wheel here (a bare `torch` requirement can pull a multi-GB CUDA build);
	@# a torch that is already installed (CUDA or not) is kept.
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"
	@touch .install-stamp

install: .install-stamp

train: install
	fastq train

test: install
	$(PYTHON) -m pytest -q

lint: install
	ruff check rllib_fastq tests examples benchmarks
