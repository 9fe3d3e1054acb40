"""The five consensus functions: values, gradients (gradcheck) and sub-gradients."""
import pytest
import torch
from torch.autograd import gradcheck

from tsn_train.consensus import CONSENSUS, Attention, TopK, make_consensus


@pytest.mark.parametrize("name", CONSENSUS)
def test_gradients_match_finite_differences(name):
    torch.manual_seed(0)
    g = make_consensus(name, segments=4, feature_dim=6, topk=2).double()
    for p in g.parameters():
        p.data.normal_()  # away from the symmetric start, so weights matter
    scores = torch.randn(3, 4, 5, dtype=torch.double, requires_grad=True)
    feats = torch.randn(3, 4, 6, dtype=torch.double, requires_grad=True)
    assert gradcheck(lambda s, f: g(s, f), (scores, feats), eps=1e-6, atol=1e-5)
    params = list(g.parameters())
    if params:  # the learned weights get gradients too
        g(scores, feats).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_values():
    s = torch.tensor([[[1., -2.], [5., 0.], [3., 4.]]])  # (N=1, K=3, C=2)
    assert torch.allclose(make_consensus("average", 3, 1)(s), torch.tensor([[3., 2 / 3]]))
    assert make_consensus("max", 3, 1)(s).tolist() == [[5., 4.]]
    assert TopK(2)(s).tolist() == [[4., 2.]]
    assert TopK(9)(s).tolist() == make_consensus("average", 3, 1)(s).tolist()  # k capped at K
    assert torch.allclose(make_consensus("weighted", 3, 1)(s), s.mean(1))  # starts as average
    att = Attention(2)
    feats = torch.tensor([[[0., 1.], [0., 3.], [0., 2.]]])
    assert torch.allclose(att(s, feats), s.mean(1))  # zero init = average
    with torch.no_grad():
        att.attend.weight.copy_(torch.tensor([[0., 10.]]))
    w = att.weights(feats)
    assert torch.allclose(w.sum(1), torch.ones(1)) and w[0].argmax() == 1
    assert torch.allclose(att(s, feats), torch.einsum("nkc,nk->nc", s, w))


def test_max_and_topk_send_gradient_only_to_the_chosen_snippets():
    s = torch.tensor([[[1., -2.], [5., 0.], [3., 4.]]], requires_grad=True)
    make_consensus("max", 3, 1)(s).sum().backward()
    assert s.grad.tolist() == [[[0, 0], [1, 0], [0, 1]]]
    s.grad = None
    TopK(2)(s).sum().backward()
    assert s.grad.tolist() == [[[0, 0], [.5, .5], [.5, .5]]]


def test_misuse_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown consensus"):
        make_consensus("median", 3, 8)
    with pytest.raises(ValueError, match="3 segments"):
        make_consensus("weighted", 3, 8)(torch.zeros(1, 25, 4))
    with pytest.raises(ValueError, match="features"):
        make_consensus("attention", 3, 8)(torch.zeros(1, 3, 4))
