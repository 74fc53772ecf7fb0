"""Imports each sub-command module so that it registers on the app."""
from clickpose.cli import data_cmd  # noqa: F401  check-data
from clickpose.cli import eval_cmd  # noqa: F401  eval ap, eval noc
from clickpose.cli import synth_cmd  # noqa: F401  synth
from clickpose.cli import train_cmd  # noqa: F401  train
from clickpose.cli import predict_cmd  # noqa: F401  predict
from clickpose.cli import annotate_cmd  # noqa: F401  annotate create|serve|status|export
from clickpose.cli import demo_cmd  # noqa: F401  demo
