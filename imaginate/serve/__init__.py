"""``imaginate serve``: a local Gradio web app with a tab per system (see :mod:`imaginate.serve.app`)."""
