"""Imports each sub-command module so that it registers on the app."""
from clickpose.cli import eval_cmd  # noqa: F401  eval ap, eval noc
