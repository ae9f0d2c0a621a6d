import json

import pytest

from longssm.cli.main import build_parser, main


def test_help_explains_itself(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "state-space" in out and "bench" in out


def test_unknown_suite_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "everything"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_bench_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "kernels", "--quick", "--repeats", "1", "--warmup", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    cases = [r["case"] for r in data["records"]]
    assert len(cases) == 5 and any("selective_scan" in c for c in cases)
    for r in data["records"]:
        assert r["ours_s"] > 0 and r["baseline_s"] > 0 and r["ratio"] == pytest.approx(r["baseline_s"] / r["ours_s"])
    assert data["meta"]["matmul_flops"] > 0 and data["meta"]["config"]["repeats"] == 1
    assert "ratio" in capsys.readouterr().out


def test_bench_rejects_bad_repeats():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "kernels", "--repeats", "x"])
