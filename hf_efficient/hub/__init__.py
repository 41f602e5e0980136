"""Model cards (`card`, with the Jinja templates in `templates/`) and uploads to the Hub (`push`)."""

from .card import write_model_card
from .push import push_to_hub

__all__ = ["push_to_hub", "write_model_card"]
