import numpy as np
import pytest
import torch

from longssm.data.synthetic import associative_example, induction_example, make_task, mqar_example


@pytest.mark.parametrize("name", ["induction_head", "associative_recall", "mqar"])
def test_deterministic_disjoint_and_deduplicated(name):
    kw = dict(n_train=300, n_test=50) if name == "mqar" else {}
    a, b = make_task(name, seed=3, **kw), make_task(name, seed=3, **kw)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.equal(make_task(name, seed=4, **kw).train, a.train)
    rows = {tuple(r) for r in a.train.tolist()}
    assert len(rows) == a.train.shape[0]
    assert rows.isdisjoint({tuple(r) for r in a.test.tolist()})


def test_paper_sizes():
    ih, ar = make_task("induction_head"), make_task("associative_recall")
    assert ih.train.shape == (5000, 32) and ih.test.shape == (500, 32) and ih.vocab_size == 20
    assert ar.train.shape == (5000, 23) and ar.vocab_size == 10
    assert ih.test_mask.sum(1).eq(1).all() and ih.test_mask[:, -1].all()  # last token only


def test_induction_target_is_token_after_first_copy_prefix():
    rng = np.random.default_rng(0)
    for _ in range(200):
        seq = induction_example(rng, 20, 30)
        assert seq[-2] == 18 and len(seq) == 32
        p = int(np.flatnonzero(seq[:-2] == 18)[0])
        assert seq[-1] == seq[p + 1] and seq[p + 1] != 18


def test_associative_target_is_the_keys_value():
    rng = np.random.default_rng(0)
    for _ in range(200):
        seq = associative_example(rng, 10, 20)
        pairs = seq[:-3].reshape(-1, 2)
        assert (pairs[:, 0] < 4).all() and (pairs[:, 1] >= 4).all() and (pairs[:, 1] < 8).all()
        assert seq[-3] == 8 and seq[-2] in pairs[:, 0]
        values = {k: v for k, v in pairs}
        assert all(values[k] == v for k, v in pairs)  # one map per example
        assert seq[-1] == values[seq[-2]]


def test_hand_built_mqar_and_errors():
    rng = np.random.default_rng(1)
    seq, mask = mqar_example(rng, 10, 8, 2)
    pairs = dict(seq[:4].reshape(2, 2))
    for pos in np.flatnonzero(mask):
        assert seq[pos + 1] == pairs[seq[pos]]
    assert mask.sum() == 2
    with pytest.raises(ValueError, match="do not fit"):
        mqar_example(rng, 10, 8, 3)
    with pytest.raises(ValueError, match="unknown task"):
        make_task("copying")


def test_mqar_trains_on_queries_only():
    from longssm.data.synthetic import make_task

    mqar = make_task("mqar", 0, n_train=20, n_test=5, seq_len=16, n_pairs=2, vocab_size=16)
    assert mqar.loss_on_scored and not make_task("associative_recall", 0).loss_on_scored
    # the scored inputs are exactly the query keys, whose targets are values
    keys = mqar.train[:, :-1][mqar.train_mask]
    values = mqar.train[:, 1:][mqar.train_mask]
    assert (keys < 7).all() and ((values >= 7) & (values < 14)).all() and mqar.train_mask.sum() == 40
