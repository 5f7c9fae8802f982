"""Evaluation: evaluators (classifiers, analytic decoders), metrics, two-sample tests."""
