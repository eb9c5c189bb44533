"""Recipes: one module per paper table or figure. Each launches its runs as one Hydra multirun (launch)
and writes its tables, checks and figures with the shared report module (report)."""
