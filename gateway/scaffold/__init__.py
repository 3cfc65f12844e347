"""``gateway scaffold``: start a route's migration from its Flask rule.

``plan.py`` decides and renders everything in memory; ``rules.py`` reads the Flask rule,
``render.py`` and ``models.py`` write the sources, ``config_edit.py`` the ``gateway.toml``
entry. ``gateway.cli_migrate`` is the command.
"""
