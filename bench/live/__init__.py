"""The parts of the benches that run against a live ``shoprank serve`` (``bench.crash_durability``,
``bench.hostile_inputs``, ``bench.overload``): the processes, the clients, the cases, the load."""
