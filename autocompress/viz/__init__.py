"""Views of a search for people: front plots (PNG, HTML) and plans in words.

Importing this package imports neither matplotlib nor plotly; the plotting functions do.
"""

from autocompress.viz.front import front_figures, front_rows, write_front_plots
from autocompress.viz.plans import config_text, layer_choices, layer_rows, plan_text

__all__ = ["config_text", "front_figures", "front_rows", "layer_choices", "layer_rows",
           "plan_text", "write_front_plots"]
