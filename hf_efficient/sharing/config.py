from __future__ import annotations

from dataclasses import asdict, dataclass

SCOPES = ("all", "attention", "ffn")
INITS = ("first", "mean", "layer")


@dataclass
class SharingConfig:
    """Settings of ALBERT-style cross-layer parameter sharing (Lan et al. 2019).

    Layers are split into `num_groups` contiguous groups of equal size (ALBERT's grouping rule);
    the layers of a group share the parameters in `scope`.

    Args:
        num_groups (`int`, defaults to 1): Number of groups; it must divide the depth. 1 shares
            across all layers, as ALBERT does.
        scope (`str`, defaults to "all"): "all" shares whole layers, "attention" only the attention
            blocks, "ffn" only the feed-forward blocks (ALBERT found attention sharing the cheapest
            in accuracy, FFN sharing the costliest).
        init (`str`, defaults to "first"): Starting value of the shared weights: the group's
            first layer, the "mean" of the group's layers, or one "layer" of each group.
        init_layer (`int`, *optional*): With init="layer", the position within each group (0-based)
            of the layer whose weights start the shared ones.
    """

    num_groups: int = 1
    scope: str = "all"
    init: str = "first"
    init_layer: int | None = None

    def __post_init__(self):
        if isinstance(self.num_groups, bool) or not isinstance(self.num_groups, int) or self.num_groups < 1:
            raise ValueError(f"SharingConfig(num_groups={self.num_groups!r}): a positive int that divides the depth.")
        if self.scope not in SCOPES:
            raise ValueError(f"SharingConfig(scope={self.scope!r}): use one of {SCOPES}.")
        if self.init not in INITS:
            raise ValueError(f"SharingConfig(init={self.init!r}): use one of {INITS}.")
        if (self.init == "layer") != (self.init_layer is not None):
            raise ValueError(
                f"SharingConfig(init={self.init!r}, init_layer={self.init_layer!r}): init_layer goes with init='layer'."
            )
        if self.init_layer is not None and (
            isinstance(self.init_layer, bool) or not isinstance(self.init_layer, int) or self.init_layer < 0
        ):
            raise ValueError(f"SharingConfig(init_layer={self.init_layer!r}): a position >= 0 within each group.")

    def group_size(self, num_layers: int) -> int:
        if num_layers % self.num_groups:
            raise ValueError(
                f"SharingConfig(num_groups={self.num_groups}) does not divide the {num_layers} layers of this model "
                f"into equal groups: use a divisor of {num_layers}."
            )
        return num_layers // self.num_groups

    def to_dict(self) -> dict:
        return asdict(self)
