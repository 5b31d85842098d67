"""Subcommands of the ``neuronas`` CLI; each module has ``add_parser(parser)`` setting ``func``."""
