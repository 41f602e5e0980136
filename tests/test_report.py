"""Measuring: latency side by side, weight sizes, energy counters, and the report's table and plots."""

import json
import time

import pytest

from hf_efficient.report import ModelEntry, Report, measure, plot_tradeoffs, report_markdown
from hf_efficient.report.measure import EnergyMeter, assess_timing, measure_latency, weights_size_mb


def test_latency_is_measured_side_by_side_per_batch_size():
    def sleeper(seconds_per_row):
        return lambda feed: time.sleep(seconds_per_row * len(feed["input_ids"]))

    feeds = {1: {"input_ids": [0]}, 4: {"input_ids": [0] * 4}}
    runners = {"slow": sleeper(0.01), "fast": sleeper(0.0025)}
    latency = measure_latency(runners, feeds, threads=1, seconds=0.3, rounds=3)
    # Sleeps only overshoot, and by far less than these margins; on a busy machine by about a millisecond, which
    # can lift 40 / 10 ms a little above 4.
    assert 40 <= latency["slow"][4] < 60 and 10 <= latency["slow"][1] < 20
    assert 2.5 < latency["slow"][4] / latency["fast"][4] <= 4.5


def test_latency_reports_the_spread_of_its_rounds_and_the_machine_load(monkeypatch):
    def sleeper(milliseconds):
        sleeps = iter(milliseconds)
        return lambda feed: time.sleep(next(sleeps) / 1000)

    # A budget below one call per round: one call a round, after three warm-up calls (no warm-up time), the first
    # of which is slow where a runtime allocates on its first call ("cold") and is never timed.
    runners = {
        "steady": sleeper([20] * 8),
        "jittery": sleeper([20, 20, 20, 20, 20, 40, 20, 20]),
        "cold": sleeper([200] + [20] * 7),
    }
    loads = iter([0.5, 0.7])  # before and after
    monkeypatch.setattr(measure, "machine_load", lambda: next(loads))
    latency = measure_latency(runners, {1: {"input_ids": [0]}}, threads=1, seconds=0.01, rounds=5, warmup=0)
    assert 20 <= latency["steady"][1] < 30 and 20 <= latency["jittery"][1] < 30  # the medians, as before
    assert latency.spread["jittery"][1] > 0.8 and latency.spread["steady"][1] < 0.5  # (40 - 20) / 20 = 100%
    assert 20 <= latency["cold"][1] < 30 and latency.spread["cold"][1] < 0.5
    timing = latency.timing
    assert (timing.load, timing.threads, timing.rounds) == (0.7, 1, 5) and timing.max_spread > 0.8
    assert (
        timing.reliable is False
        and "timed in rounds up to" in timing.reason
        and "(`jittery`, batch 1)" in timing.reason
    )

    # Load: the larger of before and after, against the machine's cores.
    monkeypatch.setattr(measure, "machine_load", lambda: 50.0 * measure.os.cpu_count())
    busy = measure_latency(
        {"steady": sleeper([1] * 5)}, {1: {"input_ids": [0]}}, threads=1, seconds=0.001, rounds=2, warmup=0
    )
    assert busy.timing.reliable is False and busy.timing.reason.startswith("measured while the machine was busy (load")


def test_warm_up_runs_for_its_seconds_and_sizes_the_rounds_after_it():
    calls = []

    def compiles_on_its_fifth_call(feed):  # like OpenVINO compiling a recurring shape for itself
        calls.append(feed)
        time.sleep(0.2 if len(calls) == 5 else 0.01)

    feeds = {1: {"input_ids": [0]}}
    latency = measure_latency({"ov": compiles_on_its_fifth_call}, feeds, threads=1, seconds=0.3, rounds=3, warmup=0.1)
    # 0.1 s of warm-up calls (the fifth slow), then one more, fast, that sizes the rounds at about 10 calls each
    # (sized on the slow call, they would get 1 each); no timed call is the slow one.
    assert len(calls) >= 6 + 3 * 8 and 10 <= latency["ov"][1] < 15 and latency.spread["ov"][1] < 0.5


def test_timing_is_reliable_only_on_a_quiet_machine_with_close_rounds():
    quiet = assess_timing({"a": {1: 0.05, 32: 0.02}, "b": {1: 0.2}}, 1.9, threads=2, rounds=5, cores=2)
    assert quiet.reliable is True and quiet.reason is None and quiet.max_spread == 0.2
    busy = assess_timing({"a": {1: 0.05}}, 7.9, threads=2, rounds=5, cores=2)
    assert busy.reliable is False and busy.reason == "measured while the machine was busy (load 7.9 on 2 cores)"
    both = assess_timing({"a": {1: 0.05}, "b": {32: 0.4}}, 7.9, threads=2, rounds=5, cores=2)
    assert both.reason.endswith(" and timed in rounds up to 40% apart (`b`, batch 32)")
    unknown = assess_timing({"a": {1: 0.05}}, None, threads=2, rounds=5, cores=2)  # no load average (Windows)
    assert unknown.reliable is True and unknown.load is None


def test_weights_size_counts_weight_files_only(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"0" * 2_000_000)
    (tmp_path / "tokenizer.json").write_bytes(b"0" * 5_000_000)
    assert weights_size_mb(tmp_path) == 2.0
    with pytest.raises(ValueError, match="save or export the model first"):
        weights_size_mb(tmp_path / "missing.onnx")


def test_energy_from_rapl_counters_with_wrap_around(tmp_path, monkeypatch):
    package = tmp_path / "intel-rapl:0"
    (tmp_path / "intel-rapl:0:0").mkdir(parents=True)  # a sub-domain, counted inside its package
    package.mkdir()
    (package / "max_energy_range_uj").write_text("100000000")  # 100 J
    (package / "energy_uj").write_text("99000000")
    (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("5")
    monkeypatch.setattr(measure, "POWERCAP", str(tmp_path))
    with EnergyMeter() as meter:
        (package / "energy_uj").write_text("2000000")  # wrapped: 1 J to the top, then 2 J
    assert meter.joules == pytest.approx(3.0) and meter.source == "RAPL"


def test_energy_without_counters_is_not_guessed(tmp_path, monkeypatch):
    monkeypatch.setattr(measure, "POWERCAP", str(tmp_path / "absent"))
    with EnergyMeter() as meter:
        sum(range(1000))
    assert meter.joules is None and meter.source is None


def test_report_table_and_tradeoff_plots(tmp_path):
    def model(name, accuracy, size, latency, **extra):
        return {
            "name": name,
            "kind": "int8" if "int8" in name else "pkd",
            "format": "onnx" if "int8" in name else "pytorch",
            "layers": 3,
            "parameters": 15_000_000,
            "size_mb": size,
            "metrics": {"accuracy": accuracy},
            "accuracy_retained": accuracy / 0.84,
            "latency_ms": {"1": latency / 10, "32": latency},
            "speedup": {"1": 100 / latency, "32": 100 / latency},
            "gpu_throughput": None,
            "training_seconds": 120.0,
            "energy": {"training_joules": None, "per_1000_predictions_joules": 41.5, "source": "RAPL"},
            **extra,
        }

    report = {
        "name": "demo",
        "task": {"dataset": "rotten_tomatoes", "split": "test", "rows": 1409},
        "hardware": {"cpu": "test CPU", "cpu_threads": 2},
        "reference": "teacher",
        "models": [model("teacher", 0.84, 90.9, 100.0), model("student-int8", 0.83, 12.0, 25.0)],
    }
    report = Report.from_dict(report)
    table = report_markdown(report)
    row = "| `student-int8` | int8 | 3 | 15.0M | 12.0 | 0.8300 | 98.8% | 2.5 ms (4.00x) | 25.0 ms (4.00x) |"
    assert row in table
    # An export is not trained ("-"); a trained model without a training-energy reading is "not measured".
    assert "| - | - | 41.5 J (RAPL) |" in table and "| 120 s | not measured | 41.5 J (RAPL) |" in table
    assert plot_tradeoffs(report.models, tmp_path) == ["accuracy_vs_size.png", "accuracy_vs_latency.png"]
    assert (tmp_path / "accuracy_vs_latency.png").read_bytes()[:4] == b"\x89PNG"
    assert "Warning" not in table and "spread" not in table  # nothing assessed: nothing said


def test_a_report_defaults_to_the_last_model_made_not_a_baseline_and_shows_its_tasks_table_metrics():
    entry = {"metrics": {"knn_accuracy": 0.8, "cosine_to_teacher": 1.0, "top10_overlap": 1.0}}
    models = [{"name": "teacher", **entry}, {"name": "teacher-bf16", "baseline_of": "teacher", **entry}]
    task = {"name": "sentence-embedding", "dataset": "texts", "split": "test", "metric": "knn_accuracy"}
    report = Report.from_dict({"name": "embed", "task": task, "models": models})
    assert report.final == "teacher"  # the bf16 cast is timed as a baseline, not made by the run
    header = report_markdown(report).split("| model |")[1].split("\n")[0]
    assert "| knn_accuracy | knn_accuracy retained | cosine_to_teacher | top10_overlap | training time |" in header


BUSY_TIMING = {
    "load": 7.9,
    "cores": 2,
    "threads": 2,
    "rounds": 5,
    "max_spread": 0.31,
    "reliable": False,
    "reason": "measured while the machine was busy (load 7.9 on 2 cores)",
}


def test_report_warns_when_absolute_latency_is_unreliable_and_shows_large_spreads(tmp_path):
    raw = {**OLD_REPORT, "timing": BUSY_TIMING, "models": [dict(m) for m in OLD_REPORT["models"]]}
    raw["models"][0]["latency_spread"] = {"1": 0.31}
    raw["models"][1]["latency_spread"] = {"1": 0.02}
    report = Report.from_dict(raw)
    assert report.timing.reliable is False and report.model("teacher").latency_spread == {"1": 0.31}
    table = report_markdown(report)
    warning = (
        "**Warning: latency was measured while the machine was busy (load 7.9 on 2 cores): "
        "compare the speed-ups, not the milliseconds.**"
    )
    assert warning in table
    assert "| 5.0 ms (1.00x, spread 31%) |" in table and "| 2.5 ms (2.00x) |" in table  # 2% is not shown
    assert "the slowest and fastest of the 5 timed rounds" in table
    # The new fields round-trip through report.json.
    report.save(tmp_path / "report.json")
    assert Report.load(tmp_path / "report.json") == report
    # The file alone says what the speed-ups are against.
    assert json.loads((tmp_path / "report.json").read_text())["speed_baseline"] == "`teacher`"
    # A quiet run with close rounds says nothing.
    raw["timing"] = {**BUSY_TIMING, "load": 0.4, "max_spread": 0.02, "reliable": True, "reason": None}
    raw["models"][0]["latency_spread"] = {"1": 0.02}
    quiet = report_markdown(Report.from_dict(raw))
    assert "Warning" not in quiet and "spread" not in quiet


OLD_REPORT = {  # a report.json as the runner wrote it before the vocabulary was one (names of then)
    "name": "quickstart",
    "base_model": "sentence-transformers/all-MiniLM-L6-v2",
    "task": {"dataset": "rotten_tomatoes", "split": "test", "rows": 1409, "metric": "accuracy"},
    "hardware": {"cpu": "AMD EPYC", "cpu_threads": 2, "gpu": None},
    "reference": "teacher",
    "final": "student-int8",
    "techniques": ["layerdrop", "pkd", "albert-sharing", "pruning", "int8"],
    "models": [
        {
            "name": "teacher",
            "path": "teacher",
            "techniques": ["layerdrop"],
            "training_seconds": 300.1,
            "gpu_throughput": None,
            "format": "pytorch",
            "layers": 6,
            "kind": "layerdrop",
            "parameters": 22713216,
            "size_mb": 90.9,
            "metrics": {"accuracy": 0.84},
            "energy": {"training_joules": None, "per_1000_predictions_joules": None, "source": None},
            "latency_ms": {"1": 5.0},
            "speedup": {"1": 1.0},
            "accuracy_retained": 1.0,
        },
        {
            "name": "student",
            "path": "student",
            "techniques": ["pkd"],
            "kind": "pkd",
            "format": "pytorch",
            "metrics": {"accuracy": 0.83},
            "latency_ms": {"1": 2.5},
            "speedup": {"1": 2.0},
        },
        {"name": "shared", "path": "s", "techniques": ["albert-sharing"], "kind": "shared", "metrics": {}},
        {"name": "pruned", "path": "p", "techniques": ["layerdrop", "pruning"], "kind": "pruned", "metrics": {}},
        {
            "name": "student-int8",
            "path": "onnx/model_quantized.onnx",
            "source": "student",
            "kind": "int8",
            "techniques": ["pkd", "int8"],
            "format": "onnx",
            "metrics": {"accuracy": 0.829},
            "export": {"backend": "onnxruntime", "mode": "dynamic", "chosen": "onnx_int8"},
        },
    ],
    "depths": {"teacher": {"6": 0.84, "3": 0.8}},
    "plots": ["accuracy_by_depth.png"],
    "steps": {"teacher": 300.5},
}


def test_an_earlier_report_json_reads_in_todays_vocabulary(tmp_path):
    report = Report.from_dict(OLD_REPORT)
    assert report.techniques == ["layerdrop", "distillation", "sharing", "pruning", "int8"]
    assert [m.kind for m in report.models] == ["layerdrop", "distillation", "sharing", "pruning", "int8"]
    assert report.model("student").settings == {"distillation": {"method": "pkd"}}  # "pkd" meant PKD's loss
    assert report.model("student-int8").techniques == ["distillation", "int8"]
    assert report.model("teacher").energy.per_1000_predictions_joules is None
    assert report.model("student").layers is None and report.model("student").energy.source is None
    # Today's reports round-trip exactly, through JSON too.
    report.save(tmp_path / "report.json")
    again = Report.load(tmp_path / "report.json")
    assert again == report and Report.from_dict(again.to_dict()).to_dict() == report.to_dict()
    assert isinstance(again.models[0], ModelEntry) and again.depths == {"teacher": {"6": 0.84, "3": 0.8}}
    # Without `timing` and `latency_spread` (older reports), nothing was assessed.
    assert report.timing.reliable is None and report.timing.load is None
    assert report.model("teacher").latency_spread == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models": []}, "models is empty"),
        ({"final": "nobody"}, "final='nobody' names no model"),
        ({"task": "rotten_tomatoes"}, "missing dataset"),
        ({"models": ["teacher"]}, r"each of 'models' is a mapping of a model's fields, got 'teacher'"),
        ({"task": {**OLD_REPORT["task"], "metric": "bleu"}}, r"task.metric='bleu' is not among the models' metrics"),
        ({"depths": {"teacher": {"a": 0.5}}}, r"depths\['teacher'\] must map layer counts to scores"),
        ({"models": [{**OLD_REPORT["models"][0], "metrics": {"accuracy": "high"}}]}, r"\['accuracy'\]='high' is not"),
        ({"models": [{**OLD_REPORT["models"][0], "metrics": {"accuracy": float("nan")}}]}, r"=nan is not a finite"),
        ({"models": [{**OLD_REPORT["models"][0], "metrics": None}]}, r"metrics must be a mapping of names to numbers"),
    ],
)
def test_a_broken_report_is_refused_with_what_is_wrong(change, message):
    with pytest.raises(ValueError, match=message):
        Report.from_dict({**OLD_REPORT, **change, **({"final": "teacher"} if "models" in change else {})})


def test_a_file_that_is_not_json_is_no_report(tmp_path):
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"report.json is not a report.json \(not JSON: .*\); give the report a run"):
        Report.load(tmp_path / "report.json")


def test_plots_have_titles_plain_ticks_and_every_label_inside(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from hf_efficient.report import plot_accuracy_by_depth

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep each figure to look at what was drawn
    report = Report.from_dict(OLD_REPORT)
    for model, (size, ms) in zip(
        report.models, [(90.9, 21.3), (69.6, 11.2), (90.9, 21.0), (45.5, 9.0), (17.6, 3.8)], strict=True
    ):
        model.size_mb, model.latency_ms, model.metrics = size, {"1": ms / 10, "32": ms}, {"accuracy": 0.8}
    report.models[-1].name = "a-long-model-name-at-the-right-edge-int8"
    assert plot_tradeoffs(report.models, tmp_path) == ["accuracy_vs_size.png", "accuracy_vs_latency.png"]
    plot_accuracy_by_depth({"teacher": {6: 0.84, 4: 0.8, 2: 0.6}}, tmp_path / "depth.png", floor=0.583)
    titles = [figure.axes[0].get_title() for figure in figures]
    assert titles == ["accuracy against size", "accuracy against CPU latency (batch 32)", "accuracy by depth"]
    for figure in figures:
        figure.canvas.draw()
        axes = figure.axes[0]
        ticks = [label.get_text() for label in axes.get_xticklabels() if label.get_text()]
        assert ticks and all("10^" not in t and "times" not in t and "×" not in t for t in ticks), ticks
        inside = figure.bbox
        for text in axes.texts:  # every point's label is drawn inside the figure, not cut off
            box = text.get_window_extent()
            assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, text
    legend = [t.get_text() for t in figures[-1].axes[0].get_legend().get_texts()]
    assert legend == ["teacher", "majority label (0.583)"]
    for name in ["accuracy_vs_size.png", "accuracy_vs_latency.png", "depth.png"]:
        assert (tmp_path / name).stat().st_size > 10_000


def test_measure_models_refuses_more_threads_than_cores(tiny_bert_folder):
    from hf_efficient.report import measure_models
    from hf_efficient.report.cpu import usable_cores

    too_many = usable_cores() + 1
    with pytest.raises(ValueError, match=rf"^measure_models\(threads={too_many}\): this process may use \d+ cores"):
        measure_models({"m": tiny_bert_folder}, [], threads=too_many)


@pytest.mark.parametrize(
    ("vendor", "name", "family", "model", "expected"),
    [
        ("AuthenticAMD", "AMD EPYC", "25", "17", "AMD EPYC Zen 4"),  # a VM hides the model number
        ("AuthenticAMD", "AMD EPYC", "26", "2", "AMD EPYC Zen 5"),  # twice Zen 4's AVX-512 width: not the same CPU
        ("GenuineIntel", "Intel Xeon Processor", "6", "143", "Intel Xeon Processor Sapphire Rapids"),
        ("GenuineIntel", "Intel Xeon Processor", "6", "200", "Intel Xeon Processor (family 6, model 200)"),
        ("GenuineIntel", "Intel(R) Xeon(R) Platinum 8480+", "6", "143", "Intel(R) Xeon(R) Platinum 8480+"),
    ],
)
def test_a_cpu_without_a_model_number_is_named_by_its_generation(monkeypatch, vendor, name, family, model, expected):
    from hf_efficient.report import cpu

    info = {"vendor_id": vendor, "model name": name, "cpu family": family, "model": model}
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: info)
    assert cpu.cpu_name() == expected
