"""Text prompts through the frozen CLIP text tower (paper Sec. 3.3.1, Eq. 6), CoOp style.

Only the text tower of CLIP is kept (token embedding, transformer, final norm, projection); the
image tower is never needed here, so training runs on cached image features alone.
"""

from __future__ import annotations

from typing import Sequence

import clip
import torch
import torch.nn as nn
import torch.nn.functional as F

PLACEHOLDER = "X"  # one BPE token; its embedding is replaced by a learnable context vector


class TextEncoder(nn.Module):
    """The frozen CLIP text tower. Never trained; kept out of checkpoints (they store its hash).

    Unlike ``CLIP.encode_text`` it accepts token *embeddings*, so learnable vectors can stand in
    for some tokens, and it only computes what reaches the output. CLIP's text attention is
    causal, so the output at a sequence's end-of-text token depends only on the positions up to
    it; hence, exactly (up to float rounding):

    * sequences are cut after the last end-of-text token (a class-name prompt is 13 of 77 positions);
    * positions the sequences share at their start (the start token and a class-shared learnable
      context: 9 of the 13) are computed once, not once per class, and their keys and values
      serve every sequence;
    * the last layer computes its attention output and MLP at the end-of-text positions only.
    """

    def __init__(self, token_embedding: nn.Embedding, positional_embedding: torch.Tensor, resblocks: nn.Module,
                 ln_final: nn.Module, text_projection: torch.Tensor):
        super().__init__()
        self.token_embedding = token_embedding
        self.positional_embedding = nn.Parameter(positional_embedding.detach().clone(), requires_grad=False)
        self.resblocks = resblocks
        self.ln_final = ln_final
        self.text_projection = nn.Parameter(text_projection.detach().clone(), requires_grad=False)
        self.float()  # a CUDA CLIP arrives in fp16; the learnable context is fp32
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_clip(cls, model: nn.Module) -> "TextEncoder":
        """Take the text tower of an OpenAI ``clip.model.CLIP`` (its image tower may be absent)."""
        return cls(model.token_embedding, model.positional_embedding, model.transformer.resblocks,
                   model.ln_final, model.text_projection)

    def train(self, mode: bool = True) -> "TextEncoder":
        return super().train(False)  # frozen: always in inference mode

    @property
    def width(self) -> int:
        return self.token_embedding.embedding_dim

    @property
    def embed_dim(self) -> int:
        return self.text_projection.shape[1]

    @property
    def context_length(self) -> int:
        return self.positional_embedding.shape[0]

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """CLIP BPE tokens (N, 77); over-long texts are cut, keeping the end-of-text token."""
        return clip.tokenize(list(texts), context_length=self.context_length, truncate=True)

    def forward(self, embeddings: torch.Tensor, eot: torch.Tensor, shared: int = 0) -> torch.Tensor:
        """Text features (N, D) of token ``embeddings`` (N, L, W), L <= 77, read at the end-of-text
        positions ``eot`` (N,); the first ``shared`` positions hold the same embeddings in every
        sequence (only sequence 0's are read)."""
        N, L, _ = embeddings.shape
        x = embeddings + self.positional_embedding[:L]  # (N, L, W)
        head = x[:1, :shared]  # (1, P, W): computed once
        tail = x[:, shared:]  # (N, S, W)
        P, S = head.shape[1], tail.shape[1]
        device = x.device
        # head position i sees head positions <= i; tail position i sees every head position and tail <= i
        head_mask = torch.ones(P, P, dtype=torch.bool, device=device).tril_()
        tail_mask = torch.cat([torch.ones(S, P, dtype=torch.bool, device=device),
                               torch.ones(S, S, dtype=torch.bool, device=device).tril_()], dim=1)  # (S, P + S)
        rows = eot - shared  # (N,) position of the end-of-text token in the tail
        for number, block in enumerate(self.resblocks):
            last = number == len(self.resblocks) - 1
            h_head, h_tail = block.ln_1(head), block.ln_1(tail)
            k_head, v_head = _keys_values(block.attn, h_head)  # (1, P, W) each
            k_tail, v_tail = _keys_values(block.attn, h_tail)  # (N, S, W) each
            keys = torch.cat([k_head.expand(N, -1, -1), k_tail], dim=1)  # (N, P + S, W)
            values = torch.cat([v_head.expand(N, -1, -1), v_tail], dim=1)
            if last:  # only the end-of-text rows reach the output
                index = torch.arange(N, device=device)
                tail = tail[index, rows].unsqueeze(1)  # (N, 1, W)
                queries, mask = h_tail[index, rows].unsqueeze(1), tail_mask[rows].unsqueeze(1)  # (N, 1, W), (N, 1, P+S)
            else:
                head = head + _attend(block.attn, h_head, k_head, v_head, head_mask)
                head = head + block.mlp(block.ln_2(head))
                queries, mask = h_tail, tail_mask
            tail = tail + _attend(block.attn, queries, keys, values, mask)
            tail = tail + block.mlp(block.ln_2(tail))
        return self.ln_final(tail[:, -1]) @ self.text_projection  # (N, D)


def _keys_values(attn: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The key and value projections of CLIP's attention for ``x`` (..., L, W)."""
    W = attn.embed_dim
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    return F.linear(x, weight[W:2 * W], bias[W:2 * W]), F.linear(x, weight[2 * W:], bias[2 * W:])


def _attend(attn: nn.MultiheadAttention, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
            mask: torch.Tensor) -> torch.Tensor:
    """CLIP's multi-head attention of queries from ``x`` (N, Lq, W) over projected ``keys`` and ``values``
    (N, Lk, W), ``mask`` (Lq, Lk) or (N, Lq, Lk) True where a query may look: the output (N, Lq, W)."""
    N, Lq, W = x.shape
    H = attn.num_heads
    query = F.linear(x, attn.in_proj_weight[:W], attn.in_proj_bias[:W])

    def heads(t: torch.Tensor) -> torch.Tensor:  # (N, L, W) -> (N, H, L, W / H)
        return t.reshape(t.shape[0], t.shape[1], H, W // H).transpose(1, 2)

    mask = mask if mask.dim() == 2 else mask.unsqueeze(1)  # broadcast over the heads
    out = F.scaled_dot_product_attention(heads(query), heads(keys), heads(values), attn_mask=mask)  # (N, H, Lq, W/H)
    return attn.out_proj(out.transpose(1, 2).reshape(N, Lq, W))


class PromptLearner(nn.Module):
    """Eq. 6: X^FP_k = TextEnc([SOS, v_1 .. v_M, tokens(text_k), EOT]) for every class k.

    ``texts`` are the per-class texts after the context: ``"<class name>."`` or the descriptor.
    The context v_1..v_M (``context_length`` = M vectors of the text width) is shared by all
    classes or, with ``class_specific``, one per class; M = 0 uses the text as it is. With
    ``visual_slot`` a token position in front of the context is kept free for the visual prompt
    (``visual_prompt = prepend``), filled per clip in :meth:`forward`.
    """

    def __init__(self, texts: Sequence[str], encoder: TextEncoder, context_length: int = 8,
                 class_specific: bool = False, visual_slot: bool = False):
        super().__init__()
        self.encoder = encoder
        self.visual_slot = visual_slot
        C, M, W = len(texts), context_length, encoder.width
        slots = M + int(visual_slot)
        prompts = [" ".join([PLACEHOLDER] * slots + [text]) for text in texts]
        self.prompts = prompts
        tokens = encoder.tokenize(prompts)  # (C, 77)
        eot = tokens.argmax(dim=-1)  # the end-of-text token has the largest id
        tokens = tokens[:, : int(eot.max()) + 1]  # (C, L): nothing after the last EOT matters
        with torch.no_grad():
            embedded = encoder.token_embedding(tokens)  # (C, L, W)
        # Derived from the frozen CLIP weights: rebuilt on load, never stored in a checkpoint.
        self.register_buffer("prefix", embedded[:, :1].clone(), persistent=False)  # SOS
        self.register_buffer("suffix", embedded[:, 1 + slots:].clone(), persistent=False)  # text, EOT
        self.register_buffer("eot", eot, persistent=False)
        shape = (C, M, W) if class_specific else (M, W)
        # CoOp's initialisation: small random vectors, so no word is privileged at the start.
        self.context = nn.Parameter(torch.randn(shape) * 0.02) if M > 0 else None
        self.num_classes = C

    def _context(self) -> torch.Tensor:
        C = self.num_classes
        if self.context is None:
            return self.prefix.new_zeros(C, 0, self.prefix.shape[-1])
        return self.context if self.context.dim() == 3 else self.context.expand(C, -1, -1)  # (C, M, W)

    def forward(self, visual: torch.Tensor | None = None) -> torch.Tensor:
        """X^FP (C, D) L2-normalised; with ``visual`` (B, C, W) tokens in the slot, per clip (B, C, D)."""
        context = self._context()  # (C, M, W)
        if visual is None:  # the slot, if any, is left out: [SOS, context, text, EOT]
            embeddings = torch.cat([self.prefix, context, self.suffix], dim=1)  # (C, L', W)
            # SOS and a class-shared context are the same in every class's prompt: computed once
            shared = 1 + (context.shape[1] if self.context is not None and self.context.dim() == 2 else 0)
            return F.normalize(self.encoder(embeddings, self.eot - int(self.visual_slot), shared), dim=-1)  # (C, D)
        if not self.visual_slot:
            raise ValueError("this prompt has no slot for a visual prompt")
        B, C, W = visual.shape
        parts = [self.prefix, visual.unsqueeze(2), context, self.suffix]  # (C or B x C, *, W)
        embeddings = torch.cat([part.expand(B, C, -1, W) for part in parts], dim=2)  # (B, C, L, W)
        out = self.encoder(embeddings.reshape(B * C, -1, W), self.eot.repeat(B), shared=1)  # (B*C, D), SOS shared
        return F.normalize(out, dim=-1).reshape(B, C, -1)  # (B, C, D)
