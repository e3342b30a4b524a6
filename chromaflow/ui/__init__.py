"""The web app: ``chromaflow ui`` (Gradio; ``pip install "chromaflow[ui]"``).

:mod:`chromaflow.ui.jobs` (uploads, job folders, the queue) and
:mod:`chromaflow.ui.views` (what is shown) need no Gradio;
:mod:`chromaflow.ui.app` builds the page.
"""
