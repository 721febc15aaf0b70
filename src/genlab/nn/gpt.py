"""A GPT language model (pre-LayerNorm, causal self-attention through scaled_dot_product_attention, tied (or
untied) input/output embeddings, learned or rotary positions, optional QK-norm, squared-ReLU MLP, zero-initialised
output projections and logit soft-capping) with a preallocated key/value cache, so generating a
token reuses every earlier token's keys and values instead of recomputing them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Per-layer key/value buffers of shape B x heads x max_len x head_dim, filled left to right."""

    def __init__(self, layers: int, batch: int, heads: int, max_len: int, head_dim: int, dtype=torch.float32,
                 device: torch.device | None = None):
        shape = (batch, heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.length = 0  # tokens already cached (the same for every layer)
        self.max_len = max_len

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.length, self.length + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


def segment_positions(segments: torch.Tensor) -> torch.Tensor:
    """Position of each token within its segment (B x T): counting restarts where the segment id changes."""
    t = segments.shape[1]
    index = torch.arange(t, device=segments.device).expand_as(segments)
    change = torch.ones_like(segments, dtype=torch.bool)
    change[:, 1:] = segments[:, 1:] != segments[:, :-1]
    return index - torch.cummax(torch.where(change, index, 0), dim=1).values


def segment_mask(segments: torch.Tensor) -> torch.Tensor:
    """B x 1 x T x T attention mask: causal and within the same segment (no token sees another conversation)."""
    t = segments.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=segments.device).tril()
    return ((segments[:, :, None] == segments[:, None, :]) & causal)[:, None]


def rotary_tables(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of RoPE (Su et al. 2021) for the given positions (T, or B x T), shape (..., head_dim/2)."""
    freqs = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.float()[..., None] * freqs
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + d/2) (the GPT-NeoX layout: contiguous halves, cheaper than interleaved pairs)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class ReLU2(nn.Module):
    """Squared ReLU, relu(x)^2 (So et al. 2021, "Primer"; modded-nanogpt's MLP activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


def rms_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x scaled to unit root-mean-square over its last dimension (no learned gain)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, rotary: bool, qk_norm: bool = False):
        super().__init__()
        self.heads, self.rotary, self.dropout, self.qk_norm = heads, rotary, dropout, qk_norm
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None, layer: int, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.qk_norm:  # unit RMS per head, before the rotation (which keeps it) and the cache
            q, k = rms_norm(q), rms_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(layer, k, v)
        causal = mask is None and past == 0 and t > 1
        if past and t > 1:  # a chunk after a cached prefix: query i sees keys up to past + i
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(diagonal=past)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(b, t, c)))


ACTIVATIONS = {"gelu": nn.GELU, "relu2": ReLU2}


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, rotary: bool, qk_norm: bool = False,
                 activation: str = "gelu"):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout, rotary, qk_norm)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), ACTIVATIONS[activation](), nn.Linear(4 * dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, x, rope, cache, layer, mask=None):
        x = x + self.attn(self.ln1(x), rope, cache, layer, mask)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Options (defaults: the GPT-2 / nanoGPT block): `qk_norm` RMS-normalises queries and keys per head before
    attention; `activation` gelu | relu2 (squared ReLU) in the MLP; `tie_embeddings` shares the token embedding
    with the output head; `zero_init_proj` starts the attention and MLP output projections at zero (each block
    starts as the identity); `logit_softcap` c > 0 bounds the logits to (-c, c) by c * tanh(logits / c)."""

    def __init__(self, vocab_size: int, block_size: int, layers: int = 4, heads: int = 4, dim: int = 128,
                 dropout: float = 0.0, positions: str = "learned", qk_norm: bool = False, activation: str = "gelu",
                 tie_embeddings: bool = True, zero_init_proj: bool = False, logit_softcap: float | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.block_size, self.heads, self.head_dim = block_size, heads, dim // heads
        self.rotary = positions == "rotary"
        self.logit_softcap = logit_softcap or None
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = None if self.rotary else nn.Embedding(block_size, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, self.rotary, qk_norm, activation)
                                    for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight  # weight tying (Press & Wolf 2017)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by depth
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                if zero_init_proj:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        return KVCache(len(self.blocks), batch, self.heads, max_len or self.block_size, self.head_dim,
                       self.tok_emb.weight.dtype, self.tok_emb.weight.device)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None,
                segments: torch.Tensor | None = None) -> torch.Tensor:
        """Logits B x T x vocab for tokens `idx` (B x T), continuing `cache` when given. `segments` (B x T, packed
        conversations): a token attends only within its segment, and positions restart at each segment."""
        b, t = idx.shape
        start = cache.length if cache is not None else 0
        if start + t > (cache.max_len if cache is not None else self.block_size):
            raise ValueError(f"{start + t} positions exceed the context of {self.block_size}")
        positions = torch.arange(start, start + t, device=idx.device)
        mask = None
        if segments is not None:
            positions, mask = segment_positions(segments), segment_mask(segments)
        x = self.tok_emb(idx)
        rope = None
        if self.rotary:
            rope = rotary_tables(positions, self.head_dim)
            if segments is not None:  # B x T x d/2 tables broadcast over heads
                rope = (rope[0][:, None], rope[1][:, None])
        else:
            x = x + self.pos_emb(positions)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, cache, i, mask)
        if cache is not None:
            cache.length += t
        logits = self.lm_head(self.ln_f(x))
        if self.logit_softcap:
            logits = self.logit_softcap * torch.tanh(logits / self.logit_softcap)
        return logits
