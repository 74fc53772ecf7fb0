"""An active-learning campaign as library calls: the steps a round is made of (score the pool,
choose, annotate, import, retrain, evaluate, register, report), each a plain function that
reads and writes the store, so an orchestrator (flows/) only calls them in order."""
from clickpose.campaign.config import CampaignConfig, TrainSettings

__all__ = ["CampaignConfig", "TrainSettings"]
