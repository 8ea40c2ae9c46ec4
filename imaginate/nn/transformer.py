"""A small decoder-only (causal) transformer language model over characters, and its blocks (also used
bidirectionally, with a mask, or with style-adaptive layer norms by the styled-text system)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to positions <= t.

    Args:
        d_model: model width; split evenly over the heads.
        n_heads: number of attention heads; must divide d_model.
        dropout: dropout on the attention weights (training only) and on the output.
        causal: False lets every position attend to every position (an encoder).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, causal: bool = True) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"n_heads ({n_heads}) must divide d_model ({d_model})")
        self.n_heads = n_heads
        self.dropout = dropout
        self.causal = causal
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.proj_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x: [B, T, D]; attn_mask: optional [B, 1, T, T] bool, True where query i may attend to key j
        (it replaces the causal rule, so a caller who wants both passes their conjunction)."""
        b, t, d = x.shape  # [B, T, D]
        qkv = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads)  # [B, T, 3, H, D/H]
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, H, T, D/H] each
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and attn_mask is None,
        )  # [B, H, T, D/H]
        return self.proj_dropout(self.proj(attended.transpose(1, 2).reshape(b, t, d)))  # [B, T, D]


class AdaptiveLayerNorm(nn.Module):
    """Style-adaptive layer norm (AdaIN applied per token): ``(1 + gamma(s)) * LN(x) + beta(s)`` with a
    parameter-free LayerNorm over the features of each token (statistics never mix positions, so a causal
    model stays causal) and ``[gamma, beta] = Linear(s)``, initialised to zero (a plain LayerNorm at start).

    Args:
        d_model: features D of x [B, T, D].
        cond_dim: length of the style code s [B, S].
    """

    def __init__(self, d_model: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, elementwise_affine=False)
        self.to_scale_shift = nn.Linear(cond_dim, 2 * d_model)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        gamma, beta = self.to_scale_shift(cond).unsqueeze(1).chunk(2, dim=-1)  # [B, 1, D] each
        return (1 + gamma) * self.norm(x) + beta  # [B, T, D]


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + attention(LN(x)), then x + MLP(LN(x)) with a 4x GELU MLP.

    Args:
        d_model: model width.
        n_heads: number of attention heads.
        dropout: dropout in attention and after the MLP.
        causal: False for a bidirectional (encoder) block.
        cond_dim: > 0 replaces both LayerNorms by AdaptiveLayerNorm on a code [B, cond_dim] passed to forward.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, causal: bool = True,
                 cond_dim: int = 0) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.attention_norm = AdaptiveLayerNorm(d_model, cond_dim) if cond_dim else nn.LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, n_heads, dropout, causal)
        self.mlp_norm = AdaptiveLayerNorm(d_model, cond_dim) if cond_dim else nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        """x: [B, T, D]; attn_mask: see CausalSelfAttention; cond: [B, cond_dim], required iff cond_dim > 0."""
        if self.cond_dim:
            if cond is None:
                raise ValueError("this block has adaptive norms: pass cond [B, cond_dim]")
            x = x + self.attention(self.attention_norm(x, cond), attn_mask)  # [B, T, D]
            return x + self.mlp(self.mlp_norm(x, cond))  # [B, T, D]
        x = x + self.attention(self.attention_norm(x), attn_mask)  # [B, T, D]
        return x + self.mlp(self.mlp_norm(x))  # [B, T, D]


class CharTransformerLM(nn.Module):
    """Decoder-only transformer: token + learned position embeddings, pre-LN causal blocks,
    a final LayerNorm and a linear head to next-token logits.

    Args:
        vocab_size: number of tokens V.
        context: the longest sequence T the position embedding covers.
        d_model: model width.
        n_layers: number of transformer blocks.
        n_heads: attention heads per block; must divide d_model.
        dropout: dropout on embeddings, attention and MLP outputs (training only).
    """

    def __init__(
        self,
        vocab_size: int,
        context: int,
        d_model: int = 128,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if vocab_size <= 0 or context <= 0 or d_model <= 0 or n_layers < 0 or n_heads <= 0:
            raise ValueError(
                f"vocab_size, context, d_model and n_heads must be positive and n_layers >= 0, got "
                f"vocab_size={vocab_size}, context={context}, d_model={d_model}, n_layers={n_layers}, n_heads={n_heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.context = context
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(context, d_model)
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2 style: N(0, 0.02) weights, zero biases; LayerNorm keeps (1, 0)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: Tensor) -> Tensor:
        """Next-token logits.

        Args:
            ids: [B, T] int64 token ids, T <= context.

        Returns:
            [B, T, V] logits; position t depends only on ids[:, : t + 1].
        """
        t = ids.shape[1]
        if t > self.context:
            raise ValueError(f"sequence length {t} exceeds the model's context {self.context}")
        positions = torch.arange(t, device=ids.device)  # [T]
        x = self.token_embedding(ids) + self.position_embedding(positions)  # [B, T, D]
        x = self.embedding_dropout(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))  # [B, T, V]
