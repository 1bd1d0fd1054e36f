"""Evaluation of dt policies: batched integration, the ``--target-error`` search, comparisons."""
