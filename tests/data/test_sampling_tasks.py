"""The SMR tasks: ListOps labels against a direct evaluator, disjoint splits; digit resampling
keeps images and labels; continuous signals sampled at any rate; zero-order hold."""

import numpy as np
import pytest
import torch

from longssm.data import listops, sampling


@pytest.mark.parametrize("text, value", [
    ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
    ("[MIN 4 3 [MAX 2 3 ] 1 0 ]", 0),
    ("[SM 5 6 [MED 1 2 3 ] ]", 3),  # (5 + 6 + 2) mod 10
    ("[MED 1 2 3 4 ]", 2),  # even count: the integer part of 2.5
    ("[MED 9 [SM 9 9 ] 1 ]", 8),  # median of 9, 8, 1
    ("[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]", 5),
    ("7", 7),
])
def test_evaluator_on_hand_written_expressions(text, value):
    assert listops.evaluate(text.split()) == value


def test_generated_labels_equal_the_evaluator_and_splits_are_disjoint():
    cfg = listops.ListOpsConfig(min_len=20, max_len=60, max_depth=4, max_args=4)
    train, test = listops.make_split(300, 100, seed=3, cfg=cfg)
    texts = []
    for data in (train, test):
        for ids, mask, label in zip(data.tokens, data.mask, data.labels):
            tokens = [listops.VOCAB[i] for i in ids[mask].tolist()]
            assert cfg.min_len <= len(tokens) <= cfg.max_len
            assert listops.evaluate(tokens) == label.item()
            assert (~mask[len(tokens):]).all() and (ids[~mask] == listops.PAD).all()  # right-padded
            texts.append(" ".join(tokens))
    assert len(set(texts)) == 400  # no expression in both splits (nor twice in one)
    again, _ = listops.make_split(300, 100, seed=3, cfg=cfg)
    assert torch.equal(again.tokens, train.tokens)  # a pure function of the seed
    assert len(set(train.labels.tolist())) == 10


def test_digit_resampling_keeps_labels_and_images():
    images, labels = sampling.digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,) and set(labels.tolist()) == set(range(10))
    x8 = sampling.resample(images[:50], 8)
    assert torch.allclose(x8[..., 0], images[:50].flatten(1))  # r = 8 is the identity
    x32 = sampling.resample(images[:50], 32).view(50, 32, 32)
    assert torch.allclose(x32[:, ::31, ::31], images[:50][:, ::7, ::7], atol=1e-6)  # corners kept
    # the nearest training-resolution class template still matches: resampling keeps what a digit is
    down = torch.nn.functional.interpolate(x32[:, None], size=(8, 8), mode="bilinear", align_corners=True)[:, 0]
    assert (down - images[:50]).abs().mean() < 0.05
    assert sampling.digit_rate(8) == 0.25 and sampling.digit_rate(32) == 4.0


def test_sines_are_functions_of_time():
    sig = sampling.sines(64, seed=1)
    assert set(sig.label.tolist()) <= set(range(sampling.SINE_CLASSES))
    assert (sig.freq >= 2 + 3 * sig.label[:, None]).all() and (sig.freq <= 4 + 3 * sig.label[:, None]).all()
    t1, dt1 = sampling.uniform_times(64, 1.0)
    t4, dt4 = sampling.uniform_times(64, 4.0)
    assert t1.shape == (64, 128) and t4.shape == (64, 512) and np.allclose(dt4, 0.25) and np.allclose(dt1, 1.0)
    clean1 = sig.at(t1, np.random.default_rng(0), noise_std=0.0)
    clean4 = sig.at(t4, np.random.default_rng(0), noise_std=0.0)
    assert torch.allclose(clean4[:, ::4], clean1, atol=1e-5)  # the same signal, sampled 4x denser
    tj, dtj = sampling.jittered_times(64, 0.5, np.random.default_rng(0))
    assert tj[:, 0].max() == 0 and np.allclose(np.diff(tj, axis=1) * 128, dtj[:, 1:])


def test_hold():
    x = torch.tensor([[1, 2, 3]])
    assert sampling.hold(x, 2).tolist() == [[1, 1, 2, 2, 3, 3]]
    with pytest.raises(ValueError, match="integer factor"):
        sampling.hold(x, 0.5)
