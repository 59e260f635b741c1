"""The two faces of the explorer: the Gradio UI (`app.ui`) and the CLI (`app.cli`).

Only this package imports Gradio; it calls `index` and `projections`, never Qdrant directly.
"""
