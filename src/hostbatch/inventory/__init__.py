"""Inventories: INI (folder and single-file forms), YAML, ~/.ssh/config; host selection."""

from hostbatch.inventory.inventory import (
    ENV_VAR,
    Inventory,
    default_locations,
    find_inventory,
    load_inventory,
)
from hostbatch.inventory.patterns import expand, fold, fold_text

__all__ = [
    "ENV_VAR",
    "Inventory",
    "default_locations",
    "expand",
    "find_inventory",
    "fold",
    "fold_text",
    "load_inventory",
]
