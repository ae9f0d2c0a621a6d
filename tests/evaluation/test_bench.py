"""The benchmark suites run end to end at tiny sizes and measure every contender they name: the
peers (installed by the set-up's [bench] extra) included."""

import json

import torch

from longssm.evaluation import bench_eval, bench_generate, bench_train
from longssm.evaluation.bench_generate import BUILDERS, GenerateBenchConfig


def test_generate_suite_times_every_contender_at_every_point(tmp_path):
    cfg = GenerateBenchConfig.quick()
    result = bench_generate.run(cfg, tmp_path / "g.json", progress=lambda *_: None)
    bench_generate.plot(result, tmp_path / "g.png")
    assert tmp_path.joinpath("g.png").stat().st_size > 0 and "Decode latency, batch 1" in bench_generate.markdown(result)
    assert result["skipped"] == {}  # transformers and mambapy come with the set-up
    assert len({r["contender"] for r in result["records"]}) == len(cfg.contenders)  # ours under tiny-* names
    assert len(result["records"]) == len(cfg.contenders) * len(cfg.contexts) * len(cfg.batches)
    assert all(r["ms_per_token"] > 0 and r["x_floor"] > 0 and r["x_interleaved_read_floor"] > 0 for r in result["records"])
    assert json.loads((tmp_path / "g.json").read_text())["records"] == result["records"]


@torch.no_grad()
def test_a_synthetic_kv_cache_decodes_in_place_like_a_real_one():
    c = BUILDERS["hybrid-h3-125m"](GenerateBenchConfig.quick())
    state = c.state(2, 40)
    att = [s for s in state.layers if hasattr(s, "buffer")]
    assert att and all(s.k.shape[2] == 40 and s.buffer.k.shape[2] > 41 for s in att)
    after = c.step(torch.zeros(2, dtype=torch.long), state)
    new = [s for s in after.layers if hasattr(s, "buffer")]
    assert all(s.k.shape[2] == 41 and s.buffer is old.buffer for s, old in zip(new, att)) and after.pos == 41


def test_train_suite_measures_both_groups(tmp_path):
    result = bench_train.run(bench_train.TrainBenchConfig.quick(), tmp_path / "t.json", progress=lambda *_: None)
    assert result["skipped"] == {}
    assert {r["contender"] for r in result["records"]} == set(bench_train.MAMBA_GROUP + bench_train.ATTENTION_GROUP)
    assert all(r["tokens_per_s"] > 0 and r["x_matmul_floor"] > 0 for r in result["records"])
    assert result["machine"]["matmul_gflops"] > 0
    md = bench_train.markdown(result)
    assert "| mamba / hf-mamba |" in md and "over its matrix-product floor" in md


def test_the_training_floor_counts_a_steps_matrix_products_forward_and_backward():
    """A head over an embedding: forward N x d x V multiply-adds, backward twice that (the input's
    and the weight's gradients); the embedding's backward is not a matrix product."""
    V, d, batch, L = 50, 8, 3, 7
    emb, head = torch.nn.Embedding(V, d), torch.nn.Linear(d, V, bias=False)
    ids = torch.randint(0, V, (batch, L + 1))
    assert bench_train.matmul_flops(lambda x: head(emb(x)), ids) == 6 * batch * L * d * V


def test_the_training_floor_counts_cpu_attention():
    """PyTorch's FlopCounterMode has no formula for the CPU attention kernel; ours: Q K^T and P V
    over the L (L + 1) / 2 causal pairs forward, twice that backward."""
    batch, L, D, V = 2, 6, 4, 4  # equal head dims: the fused CPU kernel (else PyTorch's math path, in bmm's)
    q, k = torch.randn(batch, 1, L, D, requires_grad=True), torch.randn(batch, 1, L, D, requires_grad=True)
    v = torch.randn(batch, 1, L, V, requires_grad=True)
    attend = lambda x: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)[:, 0]  # noqa: E731
    ids = torch.randint(0, V, (batch, L + 1))
    assert bench_train.matmul_flops(attend, ids) == 3 * 2 * batch * (L * (L + 1) // 2) * (D + V)
    assert bench_train._attention_flops((1, 1, 3, D), (1, 1, 5, D), (1, 1, 5, V), 0.0, True) == 2 * 6 * (D + V)
    assert bench_train._attention_flops((1, 1, 5, D), (1, 1, 3, D), (1, 1, 3, V), 0.0, True) == 2 * 12 * (D + V)
    assert bench_train._attention_flops((1, 1, 5, D), (1, 1, 3, D), (1, 1, 3, V)) == 2 * 15 * (D + V)


def test_eval_suite_reports_streaming_against_zero(tmp_path):
    records = bench_eval.run(tmp_path / "e.json", quick=True, warmup=1, repeats=1, progress=lambda *_: None)
    assert {r["preset"] for r in records} == set(bench_eval.PRESETS)
    assert all(r["streaming_over_zero"] > 0 and r["zero_tok_s"] > 0 for r in records)
