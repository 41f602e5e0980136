"""ALBERT-style cross-layer parameter sharing for any supported encoder, stored once on disk."""

from .config import SharingConfig
from .model import register_shared_model_type, share_layers, shared_parameter_groups, sharing_plan, unshare_layers

__all__ = [
    "SharingConfig",
    "register_shared_model_type",
    "share_layers",
    "shared_parameter_groups",
    "sharing_plan",
    "unshare_layers",
]
