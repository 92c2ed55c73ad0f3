"""shoprank.plugin_api: the edge — settings, the ``shoprank`` CLI, and (later) the HTTP service.

Importing this package loads no model, starts nothing and touches no network.
"""
