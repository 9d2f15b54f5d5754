"""The ``samplernn-*`` programs, one module each: flags at module level, ``main(argv)``, and
``run()`` (the console script) that is ``cli.run(main, 'samplernn-NAME')``.

Each is a few lines over a library module, and only a program imports one: two of them in
one process would both define ``--workdir``. ``python -m samplernn_jax.commands.NAME`` runs
one without its console script.
"""
