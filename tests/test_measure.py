"""pushpull_lite.measure: the one place that counts correct predictions."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from pushpull_lite import attacks, measure


class Fixed(nn.Module):
    """Logits that depend only on the mean pixel: class 1 when the image is bright, else class 0."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], dim=1) * self.w


def test_hits_by_hand():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 1.0]])
    # a tie goes to the lowest index, as argmax does
    assert measure.hits(logits, torch.tensor([0, 0, 0])).tolist() == [True, False, True]


def test_correct_accuracy_and_predict_agree_on_a_hand_made_batch():
    x = torch.cat([torch.full((3, 3, 4, 4), 0.9), torch.full((2, 3, 4, 4), 0.1)])
    y = torch.tensor([1, 1, 0, 0, 1])
    model = Fixed()
    assert measure.correct(model, x, y, batch_size=2).tolist() == [True, True, False, True, False]
    assert measure.accuracy(model, x, y) == pytest.approx(0.6)
    assert measure.predict(model, x).shape == (5, 2)
    # uint8 pixels are divided by 255 per batch
    assert measure.correct(model, (x * 255).round().to(torch.uint8), y).tolist() == [
        True,
        True,
        False,
        True,
        False,
    ]
    # only: the images left out count as wrong and are not evaluated
    only = torch.tensor([True, False, True, True, True])
    assert measure.correct(model, x, y, only=only).tolist() == [True, False, False, True, False]


def test_correct_applies_the_attack_per_batch_and_leaves_the_mode():
    x = torch.full((4, 3, 4, 4), 0.52)  # barely bright: an 8/255 FGSM step darkens it below 0.5
    y = torch.ones(4, dtype=torch.long)
    model = Fixed().train()
    assert measure.correct(model, x, y).all()
    fooled = measure.correct(model, x, y, functools.partial(attacks.fgsm, eps=8 / 255), batch_size=3)
    assert not fooled.any()
    assert model.training


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"labels": torch.zeros(3, dtype=torch.long)}, ValueError, "labels"),
        ({"images": torch.full((4, 3, 4, 4), 2.0)}, ValueError, r"\[0, 1\]"),
        ({"attack": "pgd"}, TypeError, "attack"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"labels": torch.full((4,), 7, dtype=torch.long)}, ValueError, "class indices"),
    ],
)
def test_correct_rejects_bad_input_by_name(kwargs, error, match):
    args = {"images": torch.rand(4, 3, 4, 4), "labels": torch.zeros(4, dtype=torch.long), "attack": None}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        measure.correct(
            Fixed(),
            args["images"],
            args["labels"],
            args["attack"],
            **{k: v for k, v in args.items() if k == "batch_size"},
        )


def test_hits_takes_predicted_classes_too():
    # a smoothed classifier's predictions: -1 abstains and is never right
    assert measure.hits(torch.tensor([2, -1, 0]), torch.tensor([2, 1, 1])).tolist() == [True, False, False]
