"""Networks of style-example-guided text generation (arXiv 2003.00674, our design; see the paper note).

- :class:`StyleEncoder`: a bidirectional transformer over a reference paragraph, mean-pooled to a style code.
- :class:`StyledDecoder`: a causal transformer LM over ``<bos> context <sep> continuation <eos>`` that takes
  the style code by one of four injections: ``prefix`` (code -> P prefix vectors), ``add`` (code added to
  every token embedding), ``adaln`` (style-adaptive layer norms in every block), ``unconditional`` (no code).
- :class:`PairDiscriminator`: real vs generated continuation, judged together with a style reference
  through a projection head ``linear(h) + <h, W r>`` (h: the paragraph's features, r: the reference's).

Every network reads tokens as ids [B, T] or as rows over the vocabulary [B, T, V] (one-hot samples from the
Gumbel-softmax, or probabilities), so gradients reach the generator through discrete text.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from imaginate.nn.transformer import AdaptiveLayerNorm, TransformerBlock

INJECTIONS = ("prefix", "add", "adaln", "unconditional")


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class TokenEmbedding(nn.Embedding):
    """An embedding that also accepts rows over the vocabulary: [B, T, V] float -> rows @ weight."""

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.is_floating_point():
            return tokens @ self.weight  # [B, T, V] @ [V, D] -> [B, T, D]
        return super().forward(tokens)  # [B, T] -> [B, T, D]


def key_mask(valid: Tensor, causal: bool) -> Tensor:
    """[B, T] bool of real tokens -> [B, 1, T, T] attention mask (query i, key j): j valid (and j <= i if
    causal); every position may attend to itself, so rows of padding stay finite."""
    t = valid.shape[1]
    mask = valid[:, None, None, :].expand(-1, 1, t, t)  # [B, 1, T, T]
    if causal:
        mask = mask & torch.ones(t, t, dtype=torch.bool, device=valid.device).tril()
    return mask | torch.eye(t, dtype=torch.bool, device=valid.device)


class StyleEncoder(nn.Module):
    """Reference paragraph -> style code.

    Args:
        vocab_size, max_len: tokens V and the longest reference R.
        d_model, n_layers, n_heads, dropout: transformer sizes.
        style_dim: length S of the style code.
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int, n_layers: int, n_heads: int, style_dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.max_len = max_len
        self.token_embedding = TokenEmbedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, dropout, causal=False) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.to_code = nn.Linear(d_model, style_dim)
        self.apply(_init_weights)

    def features(self, tokens: Tensor, valid: Tensor) -> Tensor:
        """tokens [B, R] or [B, R, V]; valid [B, R] bool -> pooled features [B, D]."""
        r = valid.shape[1]
        x = self.token_embedding(tokens) + self.position_embedding(torch.arange(r, device=valid.device))
        mask = key_mask(valid, causal=False)
        for block in self.blocks:
            x = block(x, mask)
        x = self.final_norm(x)  # [B, R, D]
        w = valid.unsqueeze(-1).to(x.dtype)  # [B, R, 1]
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)  # [B, D]

    def forward(self, tokens: Tensor, valid: Tensor) -> Tensor:
        return self.to_code(self.features(tokens, valid))  # [B, S]


class StyledDecoder(nn.Module):
    """Causal LM conditioned on a style code.

    Args:
        vocab_size: tokens V.
        max_len: the longest sequence T.
        d_model, n_layers, n_heads, dropout: transformer sizes.
        style_dim: length S of the style code.
        injection: prefix | add | adaln | unconditional.
        n_prefix: prefix vectors made from the code (``prefix`` only).
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int, n_layers: int, n_heads: int, style_dim: int,
                 injection: str = "adaln", n_prefix: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if injection not in INJECTIONS:
            raise ValueError(f"injection '{injection}' is not one of {', '.join(INJECTIONS)}")
        self.injection = injection
        self.max_len = max_len
        self.n_prefix = n_prefix if injection == "prefix" else 0
        self.token_embedding = TokenEmbedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        self.embedding_dropout = nn.Dropout(dropout)
        cond = style_dim if injection == "adaln" else 0
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, dropout, True, cond) for _ in range(n_layers))
        self.final_norm = AdaptiveLayerNorm(d_model, style_dim) if cond else nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        if injection == "prefix":
            self.code_to_prefix = nn.Linear(style_dim, n_prefix * d_model)
        elif injection == "add":
            self.code_to_embedding = nn.Linear(style_dim, d_model)
        self.apply(_init_weights)
        for m in self.modules():  # adaptive norms start as plain LayerNorms
            if isinstance(m, AdaptiveLayerNorm):
                nn.init.zeros_(m.to_scale_shift.weight)
                nn.init.zeros_(m.to_scale_shift.bias)

    def forward(self, tokens: Tensor, code: Tensor | None, valid: Tensor | None = None,
                last_only: bool = False) -> Tensor:
        """Next-token logits.

        Args:
            tokens: [B, T] ids or [B, T, V] rows; right padding needs no mask (causality hides it).
            code: [B, S] style codes (ignored, may be None, for ``unconditional``).
            valid: optional [B, T] bool for left-padded batches (generation): positions count real tokens
                only and padding is never attended to.
            last_only: logits of the last position only, [B, 1, V] (generation: the head is the costliest
                layer per position).

        Returns:
            [B, T, V] logits; position t depends only on tokens[:, : t + 1] and the code.
        """
        b, t = tokens.shape[:2]
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds the decoder's max_len {self.max_len}")
        if self.injection != "unconditional" and code is None:
            raise ValueError(f"injection '{self.injection}' needs a style code")
        device = tokens.device
        if valid is None:
            positions = torch.arange(t, device=device).expand(b, t)  # [B, T]
        else:
            positions = (valid.long().cumsum(1) - 1).clamp_min(0)  # [B, T]: left padding does not count
        x = self.token_embedding(tokens) + self.position_embedding(positions)  # [B, T, D]
        if self.injection == "add":
            x = x + self.code_to_embedding(code).unsqueeze(1)
        mask = None if valid is None else key_mask(valid, causal=True)
        if self.injection == "prefix":
            prefix = self.code_to_prefix(code).view(b, self.n_prefix, -1)  # [B, P, D]
            x = torch.cat([prefix, x], dim=1)  # [B, P + T, D]
            ones = torch.ones(b, self.n_prefix, dtype=torch.bool, device=device)
            mask = key_mask(torch.cat([ones, valid if valid is not None else ones.new_ones(b, t)], 1), causal=True)
        x = self.embedding_dropout(x)
        cond = code if self.injection == "adaln" else None
        for block in self.blocks:
            x = block(x, mask, cond)
        x = self.final_norm(x, code) if self.injection == "adaln" else self.final_norm(x)
        x = x[:, -1:] if last_only else x[:, self.n_prefix:]
        return self.head(x)  # [B, T, V] ([B, 1, V] if last_only)


class PairDiscriminator(nn.Module):
    """Real/generated score of a continuation given a style reference (projection head).

    One bidirectional encoder (no code head) reads both texts: ``h = enc(text)``, ``r = enc(reference)``;
    ``score = w . h + h . (W r)``.
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int, n_layers: int, n_heads: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = StyleEncoder(vocab_size, max_len, d_model, n_layers, n_heads, d_model, dropout)
        self.unconditional = nn.Linear(d_model, 1)
        self.projection = nn.Linear(d_model, d_model, bias=False)

    def forward(self, text: Tensor, text_valid: Tensor, reference: Tensor, reference_valid: Tensor) -> Tensor:
        """text [B, L] or [B, L, V]; reference [B, R]; valids bool -> logits [B]."""
        h = self.encoder.features(text, text_valid)  # [B, D]
        r = self.encoder.features(reference, reference_valid)  # [B, D]
        return self.unconditional(h).squeeze(-1) + (h * self.projection(r)).sum(-1)
