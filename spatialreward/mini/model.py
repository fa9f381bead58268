"""SpatialReward-Mini: locate the edit, then judge from the located evidence.

Data flow for a batch of B (source, edited, instruction) triples::

    images (B, 3, 128, 128) x2 + change map -> shared CNN -> patch tokens (B, 2P, D), P = 16*16
    instruction -> word embeddings -> 2 transformer layers -> text tokens (B, T, D)
    text tokens cross-attend over the patch tokens of BOTH images (L layers, H heads);
        the attention weights (B, H, T, 2P) per layer are the heatmaps the app shows
    each proposed region (box from pixel evidence) -> pool source and edited tokens inside it,
        plus the edited-minus-source difference -> region embedding (B, R, D)
        -> facts (colour and shape before/after) and "does this match the instruction"
    the text summary attends over the region embeddings; with the region statistics and the
    preservation of everything outside, and what the matched regions add up to (how many
    departures, arrivals, in-place changes) -> sc = [edit_success, over_editing], pq = [nat, art]

``MiniConfig.use_regions = False`` is the ablation: one global pool over all patches
replaces the region embeddings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from ..synth.language import COLORS, OPERATIONS, POSITIONS, SHAPES
from .features import MAX_REGIONS, MAX_TOKENS, SIZE

N_COLOR = len(COLORS) + 1  # + "none" (nothing there before an add / after a removal)
N_SHAPE = len(SHAPES) + 1
N_FACTS = 2 * N_COLOR + 2 * N_SHAPE
# What the instruction asks, read from the words by a learned head (supervised with the
# structured task SynthEdit wrote the words from): class counts per slot, "none" last.
SLOTS = {"op": len(OPERATIONS), "target_color": N_COLOR, "target_shape": N_SHAPE,
         "new_color": N_COLOR, "new_shape": N_SHAPE, "position": len(POSITIONS) + 1,
         "direction": 3}
N_SLOTS = sum(SLOTS.values())


@dataclass(frozen=True)
class MiniConfig:
    """Architecture of SpatialReward-Mini (saved as JSON next to the weights)."""

    vocab_size: int = field(default=64, metadata={"help": "words known to the tokeniser"})
    dim: int = field(default=64, metadata={"help": "token width D"})
    heads: int = field(default=4, metadata={"help": "attention heads per layer"})
    text_layers: int = field(default=2, metadata={"help": "self-attention layers over words"})
    cross_layers: int = field(default=2, metadata={"help": "text-to-image attention layers"})
    use_regions: bool = field(default=True, metadata={"help": "False = global-pool ablation"})
    place_match: bool = field(default=False, metadata={
        "help": "give the matcher the agreement between a region's grid cell and the place "
                "the instruction names"})
    region_counts: bool = field(default=False, metadata={
        "help": "give the scorer what the matched regions add up to: how many, and how many "
                "show something leaving, arriving or changing in place (see matched_counts)"})

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if not self.use_regions and (self.place_match or self.region_counts):
            raise ConfigError("place_match and region_counts read regions: they need "
                             "use_regions=True (the global ablation has neither)")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class PatchEncoder(nn.Module):
    """(B, 4, 128, 128) image + change map -> (B, 256, D) patch tokens on a 16 x 16 grid."""

    def __init__(self, dim: int) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout),
                                 nn.GELU())

        self.net = nn.Sequential(block(4, 32, 2), block(32, 48, 2), block(48, dim, 2),
                                 block(dim, dim, 1))
        self.pos = nn.Parameter(torch.zeros(1, (SIZE // 8) ** 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net(x)  # (B, D, 16, 16)
        return f.flatten(2).transpose(1, 2) + self.pos  # (B, 256, D)


class CrossLayer(nn.Module):
    """Text tokens attend over image patch tokens; returns new text tokens and weights."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights = self.attn(self.norm1(q), kv, kv, need_weights=True,
                                 average_attn_weights=False)  # weights (B, H, T, 2P)
        q = q + out
        return q + self.ff(self.norm2(q)), weights


def box_masks(boxes: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, R, 4) boxes in 0..1 -> (B, R, grid*grid) soft masks of the patches they cover."""
    centers = (torch.arange(grid, dtype=boxes.dtype) + 0.5) / grid
    x1, y1, x2, y2 = boxes.unbind(-1)  # (B, R) each
    # A patch belongs to a box when its centre is inside, widened by half a patch so
    # that tiny boxes still own at least one patch.
    pad = 0.5 / grid
    c = centers[None, None]
    inx = (c >= (x1 - pad)[..., None]) & (c <= (x2 + pad)[..., None])
    iny = (c >= (y1 - pad)[..., None]) & (c <= (y2 + pad)[..., None])
    mask = iny[..., :, None] & inx[..., None, :]  # (B, R, grid, grid)
    return mask.flatten(2).to(boxes.dtype)


def place_agreement(boxes: torch.Tensor, slot_probs: torch.Tensor) -> torch.Tensor:
    """(B, R): probability mass the place slot puts on each box centre's 3 x 3 grid cell."""
    cx = ((boxes[..., 0] + boxes[..., 2]) / 2 * 3).clamp(0, 2.999).floor()
    cy = ((boxes[..., 1] + boxes[..., 3]) / 2 * 3).clamp(0, 2.999).floor()
    cell = (cy * 3 + cx).long()  # (B, R), the order of language.POSITIONS
    offset = sum(list(SLOTS.values())[:5])  # op, target colour/shape, new colour/shape
    places = slot_probs[:, offset:offset + len(POSITIONS)]  # (B, 9)
    return places.gather(1, cell)


N_COUNTS = 4


def matched_counts(p_match: torch.Tensor, fact_probs: torch.Tensor) -> torch.Tensor:
    """(B, R) match probabilities, (B, R, N_FACTS) fact probabilities -> (B, 4): the
    expected number of matched regions, and of matched regions where something left
    (nothing there after), arrived (nothing there before) or changed in place.

    A move is one departure plus one arrival; a copy that was not moved is an arrival
    alone, because its original never changes and so no region covers it. The best
    matching region cannot tell these apart; what the matched regions add up to can.
    """
    came = fact_probs[..., N_COLOR - 1]  # before colour "none"
    gone = fact_probs[..., 2 * N_COLOR - 1]  # after colour "none"
    stay = (1.0 - came) * (1.0 - gone)
    return torch.stack([p_match.sum(-1), (p_match * gone).sum(-1), (p_match * came).sum(-1),
                        (p_match * stay).sum(-1)], -1)


class MiniRewardModel(nn.Module):
    def __init__(self, config: MiniConfig) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self.patches = PatchEncoder(d)
        self.image_type = nn.Parameter(torch.zeros(2, d))  # source / edited
        self.words = nn.Embedding(config.vocab_size, d, padding_idx=0)
        self.word_pos = nn.Parameter(torch.zeros(1, MAX_TOKENS, d))
        layer = nn.TransformerEncoderLayer(d, config.heads, 2 * d, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.text = nn.TransformerEncoder(layer, config.text_layers, enable_nested_tensor=False)
        self.cross = nn.ModuleList(CrossLayer(d, config.heads) for _ in range(config.cross_layers))
        # region evidence: [source pooled, edited pooled, difference, box geometry]
        self.region = nn.Sequential(nn.Linear(3 * d + 4, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.facts = nn.Linear(d, N_FACTS)
        self.slots = nn.Linear(d, N_SLOTS)
        # Does this region show what the words ask for? The region's features, its facts
        # and place, and the instruction's slots, through an MLP that learns to compare.
        extra = 1 if config.place_match else 0
        self.match = nn.Sequential(nn.Linear(d + N_FACTS + 4 + N_SLOTS + extra, 2 * d),
                                   nn.GELU(), nn.Linear(2 * d, 1))
        self.outside = nn.Sequential(nn.Linear(2 * d + 4, d), nn.GELU())
        counts = N_COUNTS if config.region_counts else 0
        self.head = nn.Sequential(nn.Linear(3 * d + N_SLOTS + N_FACTS + 3 + counts, 2 * d),
                                  nn.GELU(),
                                  nn.Linear(2 * d, 4))

    def forward(self, source: torch.Tensor, edited: torch.Tensor, heat: torch.Tensor,
                boxes: torch.Tensor, valid: torch.Tensor, stats: torch.Tensor,
                tokens: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """source/edited (B, 3, S, S) in 0..1, heat (B, S, S), boxes (B, R, 4), valid (B, R),
        stats (B, 4), tokens (B, T)."""
        b = source.shape[0]
        h = heat[:, None]
        src = self.patches(torch.cat([source, h], 1)) + self.image_type[0]  # (B, P, D)
        edt = self.patches(torch.cat([edited, h], 1)) + self.image_type[1]
        both = torch.cat([src, edt], 1)  # (B, 2P, D)

        pad = tokens == 0
        pad[:, 0] = False  # an empty instruction still has one position to attend from
        txt = self.text(self.words(tokens) + self.word_pos, src_key_padding_mask=pad)
        keep = (~pad).to(txt.dtype)[..., None]
        slot_logits = self.slots((txt * keep).sum(1) / keep.sum(1))  # words only, (B, N_SLOTS)
        slot_probs = torch.cat([torch.softmax(part, -1) for part in
                                slot_logits.split(list(SLOTS.values()), -1)], -1)
        attn: list[torch.Tensor] = []
        q = txt
        for layer in self.cross:
            q, w = layer(q, both)
            attn.append(w)  # (B, H, T, 2P)
        text_vec = (q * keep).sum(1) / keep.sum(1)  # (B, D), words after seeing the images

        grid = SIZE // 8
        if self.config.use_regions:
            masks = box_masks(boxes, grid) * valid[..., None].to(src.dtype)  # (B, R, P)
            geometry = boxes
        else:  # ablation: one "region" that is the whole image
            masks = torch.ones(b, 1, grid * grid, dtype=src.dtype)
            geometry = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]).expand(b, 1, 4)
            valid = torch.ones(b, 1, dtype=torch.bool)
        area = masks.sum(-1, keepdim=True).clamp(min=1.0)
        src_r = masks @ src / area  # (B, R, D): source features inside each region
        edt_r = masks @ edt / area
        region = self.region(torch.cat([src_r, edt_r, edt_r - src_r, geometry], -1))

        # Everything outside the regions: how much changed there (preservation).
        inside = masks.amax(1) if self.config.use_regions else torch.zeros(b, grid * grid)
        out_w = (1.0 - inside)[..., None]
        out_n = out_w.sum(1).clamp(min=1.0)
        outside = self.outside(torch.cat([((edt - src) * out_w).sum(1) / out_n,
                                          ((edt - src).abs() * out_w).sum(1) / out_n, stats], -1))

        facts = self.facts(region)  # (B, R, N_FACTS)
        fact_probs = torch.cat([torch.softmax(part, -1) for part in
                                facts.split([N_COLOR, N_COLOR, N_SHAPE, N_SHAPE], -1)], -1)
        asked = slot_probs[:, None].expand(-1, region.shape[1], -1)
        parts = [region, fact_probs, geometry, asked]
        if self.config.place_match:  # P(instruction names the cell this region's centre is in)
            parts.append(place_agreement(geometry, slot_probs)[..., None])
        match = self.match(torch.cat(parts, -1))[..., 0]
        logits = match.masked_fill(~valid, -1e4)
        weight = torch.softmax(logits, -1) * valid.any(-1, keepdim=True)  # no region: zeros
        region_vec = (weight[..., None] * region).sum(1)
        region_facts = (weight[..., None] * fact_probs).sum(1)
        p_match = torch.sigmoid(match).masked_fill(~valid, 0.0)  # (B, R)
        best = p_match.amax(-1, keepdim=True)
        # Changes nobody asked for (collateral damage, a wrong object): how many, how large.
        stray = (1.0 - p_match) * valid.to(p_match.dtype)
        box_area = (geometry[..., 2] - geometry[..., 0]) * (geometry[..., 3] - geometry[..., 1])
        unasked = torch.stack([stray.sum(-1), (stray * box_area).sum(-1)], -1)  # (B, 2)
        fused_parts = [text_vec, slot_probs, region_vec * best, region_facts, best, unasked,
                       outside]
        extra: dict[str, torch.Tensor] = {}
        if self.config.region_counts:
            extra["counts"] = matched_counts(p_match, fact_probs)  # (B, N_COUNTS)
            fused_parts.append(extra["counts"])
        fused = torch.cat(fused_parts, -1)
        scores = torch.sigmoid(self.head(fused)) * 25.0  # (B, 4): s1, s2, nat, art
        return {
            **extra,
            "slots": slot_logits,
            "sc": scores[:, :2], "pq": scores[:, 2:], "match": match, "valid": valid,
            # fact order: before colour, after colour, before shape, after shape
            "before_color": facts[..., :N_COLOR],
            "after_color": facts[..., N_COLOR:2 * N_COLOR],
            "before_shape": facts[..., 2 * N_COLOR:2 * N_COLOR + N_SHAPE],
            "after_shape": facts[..., 2 * N_COLOR + N_SHAPE:],
            "attention": attn,
            # what the images look like, pooled over patches: the domain check's input
            # (spatialreward.mini.domain); the scores do not read it
            "pooled": torch.cat([src.mean(1), edt.mean(1), src.std(1), edt.std(1)], -1),
        }


__all__ = ["MAX_REGIONS", "MiniConfig", "MiniRewardModel", "box_masks", "matched_counts"]
