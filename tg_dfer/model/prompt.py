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
    for some tokens, and sequences cut after the last end-of-text token: CLIP's text attention is
    causal, so the tokens after it never reach the output and cutting them changes nothing but
    the cost (about 5x less for class-name prompts).
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

    def forward(self, embeddings: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        # embeddings: (N, L, W) token embeddings, L <= 77; eot: (N,) position of end-of-text
        N, L, _ = embeddings.shape
        causal = torch.full((L, L), float("-inf"), device=embeddings.device).triu_(1)
        x = (embeddings + self.positional_embedding[:L]).permute(1, 0, 2)  # (L, N, W): CLIP is sequence-first
        for block in self.resblocks:
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False, attn_mask=causal)[0]
            x = x + block.mlp(block.ln_2(x))
        x = self.ln_final(x.permute(1, 0, 2))  # (N, L, W)
        return x[torch.arange(N, device=x.device), eot] @ self.text_projection  # (N, D)


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
            return F.normalize(self.encoder(embeddings, self.eot - int(self.visual_slot)), dim=-1)  # (C, D)
        if not self.visual_slot:
            raise ValueError("this prompt has no slot for a visual prompt")
        B, C, W = visual.shape
        parts = [self.prefix, visual.unsqueeze(2), context, self.suffix]  # (C or B x C, *, W)
        embeddings = torch.cat([part.expand(B, C, -1, W) for part in parts], dim=2)  # (B, C, L, W)
        out = self.encoder(embeddings.reshape(B * C, -1, W), self.eot.repeat(B))  # (B*C, D)
        return F.normalize(out, dim=-1).reshape(B, C, -1)  # (B, C, D)
