"""Plain-torch architectures of the built-in models.

Nothing here imports from ``msa_core`` outside ``msa_core.zoo`` so the zoo can
be used (and its weights rebuilt) on its own.  Every class stores the keyword
arguments it was built with in ``self.config`` so ``cls(**model.config)``
rebuilds an identical (untrained) model.

Module paths that lesioning code relies on:

* ``DigitsMLP``: ``"0"`` Linear(64->100), ``"1"`` LeakyReLU (hidden units are
  the output of ``"1"``, shape (B, 100)), ``"2"`` Linear(100->10).
* ``DCGANGenerator``: ``"net.0"``, ``"net.1"``, ``"net.2"`` are the
  ConvTranspose2d+BatchNorm2d+ReLU blocks (outputs (B, C, H, W), channels on
  dim 1, spatial 4x4, 8x8, 16x16); ``"net.3"`` is the output block
  (ConvTranspose2d + Tanh) producing (B, 1, 32, 32).
* ``MoELM``: ``"blocks.{i}.moe.router"`` is an ``nn.Linear(d_model, n_experts)``
  whose output (B, T, n_experts) are the router logits; setting a logit to
  ``-inf`` (via a forward hook) removes that expert for that token.
  ``"blocks.{i}.moe.experts.{e}"`` are the expert MLPs.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DigitsMLP", "DCGANGenerator", "DCGANDiscriminator", "MoELayer", "MoELM", "ARCHITECTURES"]


class DigitsMLP(nn.Sequential):
    """One-hidden-layer MLP for the 8x8 scikit-learn digits.

    Mirrors the paper's 784->N->10 LeakyReLU MLP, scaled to 64 inputs.

    Input: (B, n_inputs) float pixels in [0, 1]. Output: (B, n_classes) logits.
    The hidden units are the output of module ``"1"`` (LeakyReLU), (B, n_hidden).
    """

    def __init__(self, n_inputs: int = 64, n_hidden: int = 100, n_classes: int = 10):
        super().__init__(
            nn.Linear(n_inputs, n_hidden),
            nn.LeakyReLU(),
            nn.Linear(n_hidden, n_classes),
        )
        self.config = {"n_inputs": n_inputs, "n_hidden": n_hidden, "n_classes": n_classes}


def _up_block(c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    # bias=False because BatchNorm's shift makes a conv bias redundant.
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class DCGANGenerator(nn.Module):
    """DCGAN-style generator: latent (B, nz) -> image (B, out_channels, 32, 32) in [-1, 1].

    ``net.0``: nz -> channels[0] at 4x4; ``net.1``: -> channels[1] at 8x8;
    ``net.2``: -> channels[2] at 16x16 (each ConvTranspose2d+BatchNorm2d+ReLU);
    ``net.3``: ConvTranspose2d + Tanh -> out_channels at 32x32.
    """

    def __init__(self, nz: int = 16, channels: tuple[int, int, int] | list[int] = (64, 32, 16), out_channels: int = 1):
        super().__init__()
        c0, c1, c2 = (int(c) for c in channels)
        self.nz = nz
        self.net = nn.Sequential(
            _up_block(nz, c0, 4, 1, 0),  # 1x1 -> 4x4
            _up_block(c0, c1, 4, 2, 1),  # 4 -> 8
            _up_block(c1, c2, 4, 2, 1),  # 8 -> 16
            nn.Sequential(nn.ConvTranspose2d(c2, out_channels, 4, 2, 1), nn.Tanh()),  # 16 -> 32
        )
        self.config = {"nz": nz, "channels": [c0, c1, c2], "out_channels": out_channels}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, nz) (or (B, nz, 1, 1)) -> images (B, out_channels, 32, 32) in [-1, 1]."""
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """Small DCGAN discriminator used only during training (never committed).

    Input: (B, in_channels, 32, 32) in [-1, 1]. Output: (B,) real/fake logits.
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, int, int] | list[int] = (16, 32, 64)):
        super().__init__()
        c0, c1, c2 = (int(c) for c in channels)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, c0, 4, 2, 1), nn.LeakyReLU(0.2),  # 32 -> 16
            nn.Conv2d(c0, c1, 4, 2, 1, bias=False), nn.BatchNorm2d(c1), nn.LeakyReLU(0.2),  # 16 -> 8
            nn.Conv2d(c1, c2, 4, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.LeakyReLU(0.2),  # 8 -> 4
            nn.Conv2d(c2, 1, 4, 1, 0),  # 4 -> 1
        )
        self.config = {"in_channels": in_channels, "channels": [c0, c1, c2]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, 32, 32) -> logits (B,)."""
        return self.net(x).flatten()


class ExpertMLP(nn.Module):
    """One expert: Linear(d_model->d_ff) + GELU + Linear(d_ff->d_model); (..., d) -> (..., d)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        return self.fc2(F.gelu(self.fc1(x)))


class MoELayer(nn.Module):
    """Mixture-of-experts MLP with top-k routing, computed densely.

    The router is ``self.router`` (``nn.Linear(d_model, n_experts)``); its
    output, the router logits (..., n_experts), is what lesioning hooks
    overwrite with ``-inf``.  Routing: take the top-k logits per token, softmax
    over the *finite* ones among them, weight the chosen experts' outputs.
    Non-finite logits (``-inf``, also NaN/+inf) get weight exactly 0; a token
    whose chosen logits are all non-finite gets output exactly 0.

    ``self.last_aux_loss`` holds a Switch-style load-balancing loss from the
    latest forward pass (a scalar tensor; used only for training).
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int = 4, top_k: int = 2):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in [1, n_experts], got {top_k} for {n_experts} experts")
        self.n_experts = n_experts
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts)
        self.experts = nn.ModuleList(ExpertMLP(d_model, d_ff) for _ in range(n_experts))
        self.last_aux_loss: torch.Tensor | None = None
        self.last_gates: torch.Tensor | None = None

    @staticmethod
    def routing_weights(logits: torch.Tensor, top_k: int) -> torch.Tensor:
        """Dense gate weights from router logits.

        logits: (..., E). Returns gates (..., E): zero except on the top-k
        experts with finite logits, where they are the softmax over those
        finite top-k logits (summing to 1, or all 0 if none is finite).
        Never produces NaN, also in the backward pass, because the softmax is
        done by hand on logits whose non-finite entries were replaced by 0
        before exponentiation.
        """
        top_v, top_i = logits.topk(top_k, dim=-1)
        finite = torch.isfinite(top_v)
        safe_v = torch.where(finite, top_v, torch.zeros_like(top_v))
        # Shift by the max over finite entries only; if none is finite the
        # shift is 0 and every term is masked out below anyway.
        shift = torch.where(finite, safe_v, torch.full_like(safe_v, -torch.finfo(safe_v.dtype).max)).amax(-1, keepdim=True)
        shift = torch.where(finite.any(-1, keepdim=True), shift, torch.zeros_like(shift)).detach()
        e = torch.exp(safe_v - shift) * finite
        denom = e.sum(-1, keepdim=True)
        w = e / torch.where(denom > 0, denom, torch.ones_like(denom))
        return torch.zeros_like(logits).scatter(-1, top_i, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        logits = self.router(x)  # (..., E); lesion hooks act on this output
        gates = self.routing_weights(logits, self.top_k)
        # Dense: every expert on every token keeps shapes static and batch rows
        # aligned; the model is tiny so the wasted compute does not matter.
        expert_out = torch.stack([expert(x) for expert in self.experts], dim=-2)  # (..., E, d)
        out = (gates.unsqueeze(-1) * expert_out).sum(-2)
        self.last_gates = gates.detach()
        if self.training:
            # Switch-Transformer load balancing: E * sum_e f_e * P_e, with f_e the
            # fraction of top-k slots routed to e and P_e the mean router prob.
            probs = torch.softmax(logits, dim=-1).reshape(-1, self.n_experts)
            frac = (gates > 0).float().reshape(-1, self.n_experts).mean(0) / self.top_k
            self.last_aux_loss = self.n_experts * (frac * probs.mean(0)).sum()
        return out


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: (B, T, d) -> (B, T, d)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, d) -> (B, T, d); position t attends to positions <= t only."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (u.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for u in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MoEBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + moe(ln2(x)); (B, T, d) -> (B, T, d)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, n_experts: int, top_k: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.moe = MoELayer(d_model, d_ff, n_experts, top_k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, d) -> (B, T, d)."""
        x = x + self.attn(self.ln1(x))
        return x + self.moe(self.ln2(x))


class MoELM(nn.Module):
    """Character-level causal LM with mixture-of-experts MLPs.

    Input: tokens (B, T) int64 with T <= max_len (BOS + chars + EOS, PAD
    after EOS; causal attention means padding never affects real positions).
    Output: next-token logits (B, T, vocab_size); logits[:, t] predicts tokens[:, t+1].
    Router paths: ``blocks.{i}.moe.router`` for i in range(n_layers).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        d_ff: int = 128,
        n_experts: int = 4,
        top_k: int = 2,
        max_len: int = 16,
    ):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(MoEBlock(d_model, n_heads, d_ff, n_experts, top_k) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.config = {
            "vocab_size": vocab_size, "d_model": d_model, "n_heads": n_heads, "n_layers": n_layers,
            "d_ff": d_ff, "n_experts": n_experts, "top_k": top_k, "max_len": max_len,
        }
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        # GPT-style small init keeps the residual stream stable at start.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def router_paths(self) -> list[str]:
        """Module paths of the routers, one per block."""
        return [f"blocks.{i}.moe.router" for i in range(len(self.blocks))]

    def aux_loss(self) -> torch.Tensor:
        """Sum of the blocks' load-balancing losses from the latest training forward (scalar)."""
        losses = [b.moe.last_aux_loss for b in self.blocks if b.moe.last_aux_loss is not None]
        return torch.stack(losses).sum() if losses else torch.zeros(())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, T) int64 -> logits (B, T, vocab_size)."""
        t = tokens.shape[1]
        if t > self.pos_emb.num_embeddings:
            raise ValueError(f"sequence length {t} exceeds max_len {self.pos_emb.num_embeddings}")
        pos = torch.arange(t, device=tokens.device)
        x = self.tok_emb(tokens) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def _paper_gan() -> type[nn.Module]:
    from .paper_gan import PaperDCGANGenerator

    return PaperDCGANGenerator


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "PaperDCGANGenerator": _paper_gan(),
    "DigitsMLP": DigitsMLP,
    "DCGANGenerator": DCGANGenerator,
    "MoELM": MoELM,
}
