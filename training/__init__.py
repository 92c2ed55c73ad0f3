"""shoprank.training: fine-tuning of the cross-encoder and sentiment models (neural-ranking work).

Importing this package loads no model, starts nothing and touches no network.
"""
