"""The pure render pipeline: load a CAD or mesh file, analyse it, render views, export a web GLB.

Synchronous, no database, no network, no event loop: it runs in a child process the worker can
kill (`render_farm.child`). Every failure it knows of is a `PipelineError` with a stable code.
"""
