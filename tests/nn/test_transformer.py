"""CharTransformerLM: shapes, causality, a float64 reference for attention, and overfitting."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from imaginate.nn.transformer import CausalSelfAttention, CharTransformerLM


def reference_causal_attention(attention: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Plain masked-softmax attention, one head at a time, for comparison."""
    b, t, d = x.shape
    h = attention.n_heads
    q, k, v = attention.qkv(x).split(d, dim=-1)  # [B, T, D] each
    mask = torch.ones(t, t, dtype=torch.bool).tril()  # [T, T] query i sees keys j <= i
    heads = []
    for head in range(h):
        cols = slice(head * d // h, (head + 1) * d // h)
        scores = q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(d // h)  # [B, T, T]
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        heads.append(weights @ v[..., cols])  # [B, T, D/H]
    return attention.proj(torch.cat(heads, dim=-1))


def test_attention_matches_reference_in_float64() -> None:
    torch.manual_seed(0)
    attention = CausalSelfAttention(d_model=12, n_heads=3).double().eval()
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    torch.testing.assert_close(attention(x), reference_causal_attention(attention, x), rtol=1e-10, atol=1e-10)


def test_logits_shape_and_gradients() -> None:
    torch.manual_seed(0)
    model = CharTransformerLM(vocab_size=11, context=16, d_model=32, n_layers=2, n_heads=4)
    ids = torch.randint(0, 11, (3, 16))
    logits = model(ids)
    assert logits.shape == (3, 16, 11)
    F.cross_entropy(logits.reshape(-1, 11), ids.reshape(-1)).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 17, dtype=torch.int64))
    with pytest.raises(ValueError, match="must divide"):
        CharTransformerLM(vocab_size=11, context=16, d_model=30, n_heads=4)


def test_model_is_causal() -> None:
    torch.manual_seed(0)
    model = CharTransformerLM(vocab_size=20, context=12, d_model=32, n_layers=2, n_heads=4).double().eval()
    ids = torch.randint(0, 20, (2, 12))
    logits = model(ids)
    for t in (0, 5, 11):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1) % 20
        new_logits = model(changed)
        torch.testing.assert_close(new_logits[:, :t], logits[:, :t], rtol=0, atol=1e-12)
        assert not torch.allclose(new_logits[:, t], logits[:, t])  # position t itself does see token t
    # a prefix alone gives the same logits as inside the full sequence
    torch.testing.assert_close(model(ids[:, :5]), logits[:, :5], rtol=1e-10, atol=1e-10)


def test_tiny_model_overfits_a_repeated_string() -> None:
    torch.manual_seed(0)
    text = "hello imaginate! " * 8
    vocab = sorted(set(text))
    data = torch.tensor([vocab.index(ch) for ch in text])
    context = 16
    model = CharTransformerLM(vocab_size=len(vocab), context=context, d_model=32, n_layers=1, n_heads=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    starts = torch.arange(17)  # one window per phase of the 17-character period
    offsets = torch.arange(context + 1)
    chunks = data[starts[:, None] + offsets]  # [B, T + 1]
    inputs, targets = chunks[:, :-1], chunks[:, 1:]
    first = None
    for _ in range(150):
        loss = F.cross_entropy(model(inputs).reshape(-1, len(vocab)), targets.reshape(-1))
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 2.0  # about log(V) at initialisation
    assert loss.item() < 0.1  # only the first positions of a window are ambiguous
