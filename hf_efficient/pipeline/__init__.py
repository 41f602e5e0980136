"""Recipes that chain the techniques into one run: validate, run step by step, resume, report."""

from .recipe import Recipe, RecipeError, load_recipe
from .runner import run_recipe

__all__ = ["Recipe", "RecipeError", "load_recipe", "run_recipe"]
