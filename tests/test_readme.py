"""The README's Python examples run as written."""

import re
from pathlib import Path

from conftest import minilm_path

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    minilm_path()  # skips without the shipped model
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    small = namespace["small"]
    assert small.config.num_hidden_layers == 3
    assert small.config.hf_efficient["pruning"]["kept_layers"] == [0, 2, 4]
    assert (tmp_path / "runs/readme/pruned/config.json").exists()
    assert namespace["trainer"].model.config.num_hidden_layers == 3
    assert (tmp_path / "runs/readme/student/config.json").exists()
    reloaded, shared = namespace["reloaded"], namespace["albert_like"]
    assert type(reloaded) is type(shared) and reloaded.sharing_plan == shared.sharing_plan
    assert set(namespace["result"].metrics) == {"pytorch", "onnx_fp32", "onnx_int8"}
    assert (tmp_path / "runs/readme/int8/model_quantized.onnx").exists()
