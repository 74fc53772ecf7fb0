"""Imports each sub-command module so that it registers on the app."""
from clickpose.cli import (
    annotate_cmd,  # noqa: F401  annotate create|serve|status|export
    click_prior_cmd,  # noqa: F401  fit-click-prior
    data_cmd,  # noqa: F401  check-data
    eval_cmd,  # noqa: F401  eval ap, eval noc
    predict_cmd,  # noqa: F401  predict
    pretrained_cmd,  # noqa: F401  pretrained
    synth_cmd,  # noqa: F401  synth
    train_cmd,  # noqa: F401  train
)
