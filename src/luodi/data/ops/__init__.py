"""Cleaning operators, each registered by name, and recipes (YAML lists of operators).

`Recipe.build` (or `load_builtin_operators`) imports every module here, registering them.
"""

from luodi.data.ops.base import OPERATORS, Drop, Operator, register
from luodi.data.ops.recipe import Recipe, default_recipe, load_builtin_operators, load_recipe

__all__ = [
    "OPERATORS",
    "Drop",
    "Operator",
    "Recipe",
    "default_recipe",
    "load_builtin_operators",
    "load_recipe",
    "register",
]
