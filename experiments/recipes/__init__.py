"""Recipes: one module per paper table or figure, launching runs through the framework entry."""
