"""Recipes: a YAML file of sections (`config`), run step by step (`steps`) into a resumable folder (`state`)."""

from .config import Recipe, RecipeError, load_recipe
from .run import run_recipe

__all__ = ["Recipe", "RecipeError", "load_recipe", "run_recipe"]
