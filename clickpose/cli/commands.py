"""Imports each sub-command module so that it registers on the app."""
from clickpose.cli import eval_cmd  # noqa: F401  eval ap, eval noc
from clickpose.cli import data_cmd  # noqa: F401  check-data
from clickpose.cli import synth_cmd  # noqa: F401  synth
