import argparse
import json

import pytest

from longssm.cli.main import build_parser, main


def test_help_explains_itself(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "state-space" in out and "bench" in out


def test_every_command_and_option_says_what_it_does():
    def undocumented(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    sub.format_help()  # a bad %-format in a help string raises here
                    yield from undocumented(sub, f"{path} {name}")
            elif not action.help:
                yield f"{path} {'/'.join(action.option_strings) or action.dest}"

    assert list(undocumented(build_parser(), "longssm")) == []


def test_unknown_suite_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "everything"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "kernels", "--quick", "--repeats", "1", "--warmup", "1", "--out", str(out),
                 "--contenders", "fftconv", "scan", "scan-compile", "scan-native", "scan-step-native",
                 "linear-native", "mamba-step-native", "h3-step-native"]) == 0
    data = json.loads(out.read_text())
    cases = [r["case"].split(" vs ")[0] for r in data["records"]]
    assert cases == ["fftconv", "selective_scan", "selective_scan (compile backend)", "selective_scan (native backend)",
                     "selective scan decoding step, native", "linear (native backend)",
                     "Mamba block decoding step (native backend), fused",
                     "H3 layer decoding step (native backend), fused"]
    for r in data["records"]:
        assert r["ours_s"] > 0 and r["baseline_s"] > 0 and r["ratio"] == pytest.approx(r["baseline_s"] / r["ours_s"])
    assert data["meta"]["matmul_flops"] > 0 and data["meta"]["config"]["repeats"] == 1
    assert "ratio" in capsys.readouterr().out


def test_bench_rejects_bad_repeats():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "kernels", "--repeats", "x"])


def test_experiment_configs_are_validated_before_any_work(tmp_path, capsys):
    from longssm.cli.main import main

    cfg = tmp_path / "exp.toml"
    cfg.write_text("[length_extension]\nlr = 1e-3\ntrain_lenz = [16]\n")
    assert main(["experiment", "length-extension", "--config", str(cfg), "--out", str(tmp_path / "le")]) == 2
    assert "unknown key(s) length_extension.train_lenz" in capsys.readouterr().err
    assert main(["synthetics", "--set", "synthetics.batch_size=0.5", "--out", str(tmp_path / "s.json")]) == 2
    assert "synthetics.batch_size must be an integer" in capsys.readouterr().err
    assert main(["synthetics", "--set", "train.lr=1", "--out", str(tmp_path / "s.json")]) == 2
    assert "unknown section(s) ['train']; allowed: synthetics" in capsys.readouterr().err
    assert not list(tmp_path.glob("le*")) and not (tmp_path / "s.json").exists()


def test_train_rejects_a_mistyped_mixer_option_before_preparing_data(tmp_path, capsys):
    from longssm.cli.main import main

    out = tmp_path / "run"
    assert main(["train", "--set", "model.mixer_options.h3.d_sate=4", "--set", f"train.out_dir={out}"]) == 2
    assert "unknown key(s) model.mixer_options.h3.d_sate" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_bench_step_times_four_ways(tmp_path, capsys):
    out = tmp_path / "step.json"
    assert main(["bench", "step", "--contenders", "attention", "--repeats", "2", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "attention" and row["eager_ms"] > 0
    for mode in ("compile-model", "compile-backend", "native-backend"):
        assert row[f"{mode}_speedup"] == pytest.approx(row["eager_ms"] / row[f"{mode}_ms"])
    assert "native-backend" in capsys.readouterr().out


def test_bench_lengths_and_batches_only_where_they_apply(capsys):
    assert main(["bench", "kernels", "--lengths", "1024"]) == 2
    assert "--lengths applies to bench train and generate" in capsys.readouterr().err
    assert main(["bench", "train", "--lengths", "1"]) == 2
    assert main(["bench", "train", "--batches", "2"]) == 2
    assert "--batches applies to bench generate" in capsys.readouterr().err


def test_bench_refuses_to_replace_results_without_overwrite(tmp_path, capsys):
    """A narrowed run (one case) under the default --out once replaced the committed full table."""
    out = tmp_path / "bench.json"
    out.write_text("committed results\n")
    args = ["bench", "step", "--contenders", "attention", "--repeats", "1", "--out", str(out)]
    assert main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err and out.read_text() == "committed results\n"
    assert main(args + ["--overwrite"]) == 0 and "attention" in out.read_text()
