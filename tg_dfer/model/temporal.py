"""The multi-grained temporal network (paper Sec. 3.2): fine windows, the whole clip, and their fusion.

Shapes: B clips, T frames, D embedding size. ``mask`` is (B, T) bool, True on real frames and
False on padding; any pattern is allowed (not only a padded tail), so inference on a chosen subset
of frames (Table 6) is a mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tg_dfer.model.config import ModelConfig
from tg_dfer.sampling import window_starts


class Block(nn.Module):
    """A pre-norm transformer layer (as in CLIP) whose attention ignores padded keys."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, init: str = "identity"):
        super().__init__()
        hidden = int(round(width * mlp_ratio))
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width))
        self.drop = nn.Dropout(dropout)
        if init == "identity":
            # Zero-init the outputs of both residual branches: a new layer is the identity, so the
            # untrained network passes the CLIP embeddings through unchanged (see MultiGrainedTemporal).
            for layer in (self.attn.out_proj, self.mlp[-1]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        # x: (N, L, W); padding: (N, L) True where the key is padding
        h = self.ln_1(x)
        x = x + self.drop(self.attn(h, h, h, key_padding_mask=padding, need_weights=False)[0])
        return x + self.drop(self.mlp(self.ln_2(x)))


class Encoder(nn.Module):
    """``depth`` transformer layers with a learnable positional embedding of ``length`` positions."""

    def __init__(self, length: int, width: int, depth: int, heads: int, mlp_ratio: float, dropout: float,
                 init: str = "identity"):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(length, width) * 0.01)
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio, dropout, init) for _ in range(depth)])
        # Recompute each layer in the backward pass instead of keeping its activations: the
        # fine-grained module's windows hold every frame w times, its activations most of a
        # training step's memory (see recomputed).
        self.checkpointing = False

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # x: (N, L, W); valid: (N, L) bool
        # A sequence with no valid key would give NaN attention; such sequences hold padding only
        # and their outputs are discarded, so let them attend to everything instead.
        padding = ~valid & valid.any(dim=1, keepdim=True)
        x = x + self.positional_embedding  # (N, L, W)
        for block in self.blocks:
            x = recomputed(block, x, padding) if self.checkpointing and torch.is_grad_enabled() else block(x, padding)
        return x


# Tokens a checkpointed layer recomputes at once in the backward pass: the peak then holds one
# such piece of activations (about 37 KB a token at D = 512), not the whole batch's.
RECOMPUTED_TOKENS = 512


def _kept(p: float, shape: tuple[int, ...], like: torch.Tensor, sequence_first: bool = False) -> torch.Tensor | None:
    """A dropout draw as torch's CPU dropout makes it (``empty_like(x).bernoulli_(1 - p)``, which fills
    ``x``'s memory order), kept as bool (N, ...): the same random numbers at the same places, a
    quarter of the memory. ``sequence_first``: ``x`` is an (N, L, ...) view of (L, N, ...) memory,
    as nn.MultiheadAttention's batch-first output is. (On CUDA torch's fused dropout draws
    otherwise: there the masks are other, equally random ones.)"""
    if not p:
        return None
    stored = (shape[1], shape[0], *shape[2:]) if sequence_first else shape
    draw = torch.empty(stored, dtype=like.dtype, device=like.device).bernoulli_(1 - p).bool()
    return draw.transpose(0, 1) if sequence_first else draw


def _scaled(x: torch.Tensor, kept: torch.Tensor | None, p: float) -> torch.Tensor:
    if kept is None:
        return x
    return x * kept.to(x.dtype).div_(1 - p)  # dropout's own arithmetic: noise / (1 - p), then times x


def _block_with_masks(block: Block, x: torch.Tensor, padding: torch.Tensor, *kept: torch.Tensor | None) -> torch.Tensor:
    """``Block.forward`` with its four dropout masks given (attention weights, attention output, MLP
    hidden, MLP output), written out so that it can run on any slice of the batch."""
    N, L, W = x.shape
    attn, H = block.attn, block.attn.num_heads
    p_attn, p_out, p_hidden = attn.dropout, block.drop.p, block.mlp[2].p

    def heads(t: torch.Tensor) -> torch.Tensor:  # (N, L, W) -> (N, H, L, W / H)
        return t.reshape(N, L, H, W // H).transpose(1, 2)

    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    scores = heads(q) @ heads(k).transpose(-2, -1) / math.sqrt(W // H)  # (N, H, L, L)
    weights = _scaled(scores.masked_fill(padding[:, None, None, :], float("-inf")).softmax(dim=-1), kept[0], p_attn)
    x = x + _scaled(attn.out_proj((weights @ heads(v)).transpose(1, 2).reshape(N, L, W)), kept[1], p_out)
    hidden = _scaled(block.mlp[1](block.mlp[0](block.ln_2(x))), kept[2], p_hidden)  # (N, L, hidden)
    return x + _scaled(block.mlp[3](hidden), kept[3], p_out)


def recomputed(block: Block, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """``block(x, padding)`` without keeping its activations for the backward pass, which recomputes
    them RECOMPUTED_TOKENS at a time.

    The dropout masks are drawn first, for the whole batch and in the order ``Block.forward``
    draws them, and kept (as bool): on the CPU the pieces then see exactly the masks of the plain
    layer, so training follows the same path as without checkpointing, to float rounding (tested).
    """
    N, L, W = x.shape
    hidden = block.mlp[0].out_features
    draws = ((block.attn.dropout, (N, block.attn.num_heads, L, L), False), (block.drop.p, (N, L, W), True),
             (block.mlp[2].p, (N, L, hidden), False), (block.drop.p, (N, L, W), False))
    kept = [_kept(p, shape, x, sequence_first) if block.training else None for p, shape, sequence_first in draws]
    rows = max(1, RECOMPUTED_TOKENS // L)
    pieces = [checkpoint(_block_with_masks, block, x[start:start + rows], padding[start:start + rows],
                         *[None if mask is None else mask[start:start + rows] for mask in kept],
                         use_reentrant=False, preserve_rng_state=False)  # the pieces draw nothing
              for start in range(0, N, rows)]
    return torch.cat(pieces)  # (N, L, W)


class FineGrained(nn.Module):
    """Fine-grained temporal module (Eqs. 2-3).

    Eq. 3: the T frames are cut into N windows X'_i = [X_{i s}, ..., X_{i s + w - 1}] of ``window``
    (w) frames every ``stride`` (s) frames, N = floor((T - w) / s + 1). Eq. 2: each window gets a
    learnable positional embedding P^f per position in the window and goes through its own pass of
    the transformer encoder E_f (shared weights), so attention stays local. The paper does not say
    how the N x w outputs become the T x d of Eq. 5; we fold them back by averaging, for each frame,
    the outputs of every window that contains it, and add a last window flush with the end where s
    does not divide T - w (which would leave the last frames out of every window).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        T, w, s = config.num_frames, config.window, config.stride
        starts = window_starts(T, w, s)
        index = torch.tensor([[start + offset for offset in range(w)] for start in starts])  # (n, w)
        # Folding back is a fixed (T, n*w) averaging matrix: a matmul is deterministic on every
        # device, unlike scatter/index_add on CUDA.
        fold = F.one_hot(index.flatten(), T).T.float()  # (T, n*w)
        fold = fold / fold.sum(dim=1, keepdim=True)
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("fold", fold, persistent=False)
        self.encoder = Encoder(w, config.embed_dim, config.fine_depth, config.heads, config.mlp_ratio,
                               config.dropout, config.init)

    @property
    def num_windows(self) -> int:
        return self.index.shape[0]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        n, w = self.index.shape
        windows = x[:, self.index].reshape(B * n, w, D)  # (B*n, w, D)
        valid = mask[:, self.index].reshape(B * n, w)  # (B*n, w)
        out = self.encoder(windows, valid).reshape(B, n * w, D)  # (B, n*w, D)
        return self.fold @ out  # (B, T, D)


class CoarseGrained(nn.Module):
    """Coarse-grained temporal module (Eq. 4): a transformer over all T frames with its own positions."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.encoder = Encoder(config.num_frames, config.embed_dim, config.coarse_depth, config.heads,
                               config.mlp_ratio, config.dropout, config.init)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, mask)  # (B, T, D)


class MultiGrainedTemporal(nn.Module):
    """Instance features X^I = FC([fine, coarse]) (Eq. 5).

    A branch of depth 0 does not exist (no parameters, no compute) and the FC takes the other one
    alone; with both off, X^I = FC(frame features), a per-frame model without temporal context.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        D = config.embed_dim
        self.fine = FineGrained(config) if config.fine_depth > 0 else None
        self.coarse = CoarseGrained(config) if config.coarse_depth > 0 else None
        branches = int(self.fine is not None) + int(self.coarse is not None)
        self.fc = nn.Linear(max(branches, 1) * D, D)
        if config.init == "identity":
            # Start as the mean of the branches, which start as the identity: X^I begins as the CLIP
            # frame embeddings, so the first scores are CLIP's zero-shot scores, not random ones that
            # 1 / tau = 100 would make wildly overconfident.
            with torch.no_grad():
                self.fc.weight.copy_(torch.eye(D).repeat(1, max(branches, 1)) / max(branches, 1))
                self.fc.bias.zero_()
        # CLIP embeddings are unit vectors, so each coordinate is about 1/sqrt(D), while the
        # transformer branches (behind LayerNorm) emit O(1) coordinates once trained: unit
        # coordinates keep a frame's own content from drowning under what attention mixes in.
        self.input_scale = D ** 0.5

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D) frame embeddings; mask: (B, T)
        x = x * self.input_scale
        parts = [branch(x, mask) for branch in (self.fine, self.coarse) if branch is not None]
        instances = self.fc(torch.cat(parts, dim=-1) if parts else x)  # (B, T, D)
        return instances * mask.unsqueeze(-1)  # padding frames carry no feature
