"""Two-stage human detection: encoder proposals -> top-k queries -> decoder layers with
iterative box refinement -> the top `max_humans` humans for the keypoint decoder."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from clickpose.model.box_ops import inverse_sigmoid
from clickpose.model.encoder import EncoderState, valid_cells
from clickpose.model.layers import MLP, FeedForward, zero_last_layer
from clickpose.model.ms_deform_attn import MSDeformAttn
from clickpose.model.position_encoding import sine_embed


@dataclass
class HumanState:
    """Humans handed to the keypoint decoder."""
    content: Tensor                    # (B, N, D) query content
    boxes: Tensor                      # (B, N, 4) cxcywh, normalized by the unpadded image
    logits: Tensor                     # (B, N, 1) person logit
    # Per human-decoder layer {pred_logits (B, Q, 1), pred_boxes (B, Q, 4)} over all queries.
    layer_outputs: list[dict] = field(default_factory=list)
    # The top-k encoder proposals that became the queries: {pred_logits, pred_boxes}.
    enc_outputs: dict | None = None


class HumanDecoderLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, num_levels: int, num_heads: int, num_points: int,
                 dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformAttn(dim, num_levels, num_heads, num_points)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)

    def forward(self, tgt: Tensor, query_pos: Tensor, reference_points: Tensor,
                state: EncoderState) -> Tensor:
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout(self.self_attn(q, q, tgt, need_weights=False)[0]))
        attended = self.cross_attn(tgt + query_pos, reference_points, state.memory,
                                   state.level_shapes, state.memory_mask)
        tgt = self.norm2(tgt + self.dropout(attended))
        return self.ffn(tgt)


class HumanDecoder(nn.Module):
    def __init__(self, num_layers: int, dim: int, ffn_dim: int, num_levels: int, num_heads: int,
                 num_points: int, dropout: float, num_queries: int, max_humans: int):
        super().__init__()
        self.dim, self.num_queries, self.max_humans = dim, num_queries, max_humans
        # Two-stage: every encoder token proposes a box around itself.
        self.enc_output = nn.Linear(dim, dim)
        self.enc_output_norm = nn.LayerNorm(dim)
        self.enc_class_head = nn.Linear(dim, 1)
        self.enc_box_head = MLP(dim, dim, 4, 3)
        zero_last_layer(self.enc_box_head)
        self.query_content = nn.Embedding(num_queries, dim)
        self.ref_point_head = MLP(2 * dim, dim, dim, 2)
        layer = HumanDecoderLayer(dim, ffn_dim, num_levels, num_heads, num_points, dropout)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.class_heads = nn.ModuleList(nn.Linear(dim, 1) for _ in range(num_layers))
        self.box_heads = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in range(num_layers))
        for head in self.box_heads:
            zero_last_layer(head)
        prior = -4.595  # logit(0.01): focal-loss prior, few positives among many queries
        for head in [self.enc_class_head, *self.class_heads]:
            nn.init.constant_(head.bias, prior)

    def forward(self, state: EncoderState) -> HumanState:
        enc_logits, enc_boxes_unsig, valid = self.propose(state)
        batch = enc_logits.shape[0]
        # (B, Q) indices of the best proposals; their boxes start the queries (no gradient).
        # Padding and border tokens are never chosen.
        scores = enc_logits[..., 0].detach().masked_fill(~valid, float("-inf"))
        num_queries = min(self.num_queries, scores.shape[1])  # a very small image has few tokens
        topk = torch.topk(scores, num_queries, dim=1).indices
        topk_logits = torch.gather(enc_logits, 1, topk[..., None])
        topk_boxes = torch.gather(enc_boxes_unsig, 1, topk[..., None].expand(-1, -1, 4)).sigmoid()
        enc_outputs = {"pred_logits": topk_logits, "pred_boxes": topk_boxes}

        tgt = self.query_content.weight[None, :num_queries].expand(batch, -1, -1)
        ref = topk_boxes.detach()
        layer_outputs = []
        for layer, class_head, box_head in zip(self.layers, self.class_heads, self.box_heads):
            ref_input = scale_to_padded(ref, state.valid_ratios)
            query_pos = self.ref_point_head(sine_embed(ref_input[:, :, 0], self.dim // 2))
            tgt = layer(tgt, query_pos, ref_input, state)
            boxes = (box_head(tgt) + inverse_sigmoid(ref)).sigmoid()
            layer_outputs.append({"pred_logits": class_head(tgt), "pred_boxes": boxes})
            ref = boxes.detach()

        # Keep the most person-like queries as the humans of the keypoint decoder.
        logits = layer_outputs[-1]["pred_logits"] if layer_outputs else topk_logits
        keep = torch.topk(logits[..., 0], min(self.max_humans, num_queries), dim=1).indices
        return HumanState(
            content=torch.gather(tgt, 1, keep[..., None].expand(-1, -1, self.dim)),
            boxes=torch.gather(ref, 1, keep[..., None].expand(-1, -1, 4)),
            logits=torch.gather(logits, 1, keep[..., None]),
            layer_outputs=layer_outputs,
            enc_outputs=enc_outputs,
        )

    def propose(self, state: EncoderState) -> tuple[Tensor, Tensor, Tensor]:
        """Per encoder token: person logit (B, S, 1), box before sigmoid (B, S, 4), and
        whether the token may propose at all (B, S)."""
        proposals, valid = token_proposals(state)
        memory = state.memory.masked_fill(~valid[..., None], 0.0)
        memory = self.enc_output_norm(self.enc_output(memory))
        boxes = self.enc_box_head(memory) + proposals
        return self.enc_class_head(memory), boxes, valid


def token_proposals(state: EncoderState) -> tuple[Tensor, Tensor]:
    """A box centred on each token (size grows with the level), before sigmoid: (B, S, 4),
    and (B, S) True where the token may propose (inside the image, away from the border)."""
    batch = state.memory.shape[0]
    proposals = []
    for lvl, ((h, w), start) in enumerate(zip(state.level_shapes, state.level_start_index)):
        mask = state.memory_mask[:, start:start + h * w].view(batch, h, w)
        valid_w, valid_h = (v.clamp(min=1) for v in valid_cells(mask))
        ys, xs = torch.meshgrid(torch.arange(h, device=mask.device, dtype=torch.float32),
                                torch.arange(w, device=mask.device, dtype=torch.float32),
                                indexing="ij")
        grid = torch.stack([xs, ys], -1)[None] + 0.5
        grid = grid / torch.stack([valid_w, valid_h], -1)[:, None, None, :]
        wh = torch.full_like(grid, 0.05 * 2.0 ** lvl)
        proposals.append(torch.cat([grid, wh], -1).view(batch, -1, 4))
    proposals = torch.cat(proposals, 1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1) & ~state.memory_mask
    proposals = inverse_sigmoid(proposals.clamp(0.01, 0.99))
    return proposals, valid


def scale_to_padded(boxes: Tensor, valid_ratios: Tensor) -> Tensor:
    """(B, Q, 4) boxes normalized by the unpadded image -> (B, Q, L, 4) in each level's
    padded frame, as deformable attention samples there."""
    return boxes[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
