"""Importing any shoprank module loads no model, no torch, and opens no connection."""

import subprocess
import sys
import textwrap


def test_import_every_module_is_light():
    code = textwrap.dedent(
        """
        import importlib, pkgutil, socket, sys
        def no_network(*a, **k):
            raise AssertionError("network touched at import time")
        socket.socket.connect = no_network
        socket.create_connection = no_network
        names = []
        for pkg in ("indexer", "ranker", "plugin_api", "training"):
            mod = importlib.import_module(pkg)
            names.append(pkg)
            for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
                if info.name.endswith(".__main__"):  # runs the CLI: `python -m plugin_api.cli`
                    continue
                importlib.import_module(info.name)
                names.append(info.name)
        heavy = [m for m in ("torch", "sentence_transformers", "transformers", "opensearchpy") if m in sys.modules]
        assert not heavy, heavy
        print(len(names))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 15
