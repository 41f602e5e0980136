from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class LayerDropConfig:
    """Settings of LayerDrop (Fan et al. 2019, "Reducing Transformer Depth on Demand").

    Args:
        rate (`float` or `list[float]`, defaults to 0.2): Probability of skipping each layer at each
            training forward; a list gives one rate per layer. The paper uses 0.2 for models that
            are later pruned to about half their depth, and more to prune deeper.
        seed (`int`, defaults to 0): Seed of the drop decisions. Decisions depend only on the seed
            and the training step, so every process of a distributed run drops the same layers and
            a resumed run repeats the same sequence.
    """

    rate: float | list[float] = 0.2
    seed: int = 0

    def __post_init__(self):
        if hasattr(self.rate, "tolist"):  # a numpy array or scalar: plain floats, as config.json records them
            self.rate = self.rate.tolist()
        if isinstance(self.rate, tuple):
            self.rate = list(self.rate)
        rates = self.rate if isinstance(self.rate, list) else [self.rate]
        if not rates:
            raise ValueError("LayerDropConfig(rate=[]) is empty: give one rate, or one rate per layer.")
        for rate in rates:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
                one = isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate >= 1
                raise ValueError(
                    f"LayerDropConfig(rate={self.rate!r}): every rate must be a number in [0, 1), got {rate!r}."
                    + (" A rate of 1 would drop the layer at every step: prune it instead." if one else "")
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"LayerDropConfig(seed={self.seed!r}): the seed must be an int.")

    def layer_rates(self, num_layers: int) -> list[float]:
        """The drop rate of each of `num_layers` layers."""
        if not isinstance(self.rate, list):
            return [float(self.rate)] * num_layers
        if len(self.rate) != num_layers:
            raise ValueError(
                f"LayerDropConfig(rate=...) lists {len(self.rate)} rates but the model has {num_layers} "
                "layers: give one rate per layer, or a single float."
            )
        return [float(rate) for rate in self.rate]

    def to_dict(self) -> dict:
        return asdict(self)
