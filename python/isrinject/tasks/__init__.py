"""The PipelineTasks and their butler glue.

Each task module holds its connections, config and task, read top to bottom;
the task's ``run()`` is glue over ``isrinject.engine``.  Beside them: the
arguments of ``run()`` in source_injection's vocabulary (``isrinject.tasks.call``),
reading inputs from butler handles (``isrinject.tasks.inputs``), the flat ISR
used (``isrinject.tasks.provenance``), files instead of a butler
(``isrinject.tasks.files``), outputs marked as simulated
(``isrinject.tasks.marking``) and pipeline surgery
(``isrinject.tasks.pipeline_tools``).

Where a new line of code goes: a pixel or catalog computation that needs no
butler belongs in ``isrinject.engine``; anything that reads connections,
handles, data IDs or the registry belongs here; command-line parsing belongs in
``isrinject.cli`` (or the ``cli`` module of ``demo``/``diagnostics``).
"""
