"""Tooling around the notebooks.

``notebooks``: starter generation and execution; ``cli``: the ``hardway`` command.
"""
