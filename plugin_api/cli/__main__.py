"""``python -m plugin_api.cli``: the same as the ``shoprank`` command."""

from plugin_api.cli.main import main

raise SystemExit(main())
