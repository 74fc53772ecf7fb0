"""What a campaign is: its data, budgets, stopping rule, model recipe and annotation mode.

One pydantic model, so that it is a Prefect flow parameter, a deployment's JSON and the
record kept in the store with every round.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from selection.strategies import NEEDS_COSTS, NEEDS_EMBEDDINGS

# A small network for CPU rounds: fewer queries, one encoder layer (see clickpose.model.presets).
CPU_MODEL = {"num_queries": 30, "max_humans": 6, "enc_layers": 1, "keypoint_layers": 2}
# The input of a campaign's fresh model (no start checkpoint), small for CPU rounds. A start
# checkpoint keeps its own: its persons were learnt at that size.
FRESH_INPUT = {"image_size": 96, "max_size": 128}


class TrainSettings(BaseModel):
    """How each round fine-tunes (clickpose.train.loop.TrainConfig fields)."""
    model_config = ConfigDict(extra="forbid")

    preset: str = "tiny"
    epochs: int = 30
    max_minutes: float | None = 1.0     # budget per training run; the run stops and saves
    batch_size: int = 8
    lr: float = 4e-4
    image_size: int | None = None       # None: the start checkpoint's, else FRESH_INPUT's
    max_size: int | None = None
    model_overrides: dict = Field(default_factory=lambda: dict(CPU_MODEL))
    dn_groups: int = 1
    feedback_max_rounds: int | None = 1
    max_steps_per_epoch: int | None = None
    workers: int = 0
    device: str | None = None           # default: cuda when present, else cpu
    threads: int | None = None          # CPU threads for torch (default: the free cores)
    seed: int = 0
    # Frozen backbones only: features computed once per image and flip (augmentation: flip).
    cache_backbone_features: bool = False
    # Data-parallel processes through torchrun (clickpose.train.launch): one per GPU, each
    # with batch_size images a step. A recipe field: the global batch grows with it.
    processes: int = Field(1, ge=1)

    # Where and how fast a run trains, not what it learns: left out of recipe_key.
    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"workers", "device", "threads", "cache_backbone_features"})

    def input_size(self, fresh: bool) -> tuple[int | None, int | None]:
        """(image_size, max_size) of a run from a fresh model or from a checkpoint."""
        if not fresh:
            return self.image_size, self.max_size
        return (self.image_size or FRESH_INPUT["image_size"],
                self.max_size or FRESH_INPUT["max_size"])

    def recipe_key(self) -> str:
        """12 hex digits that change with every setting that changes what training learns."""
        import hashlib
        import json

        recipe = self.model_dump(mode="json", exclude=set(self.RUNTIME_FIELDS))
        if recipe["processes"] == 1:  # keys made before the field existed stay valid
            del recipe["processes"]
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


class CampaignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "people"                 # dataset name in the store, and the campaign's
    store: str | None = None             # storage URI (default $CLICKPOSE_STORE or WORK/store)
    work: Path                           # local folder: checkpoints, training folders, tasks
    pool: Path                           # images/ to choose from (+ annotations.json: the
                                         # ground truth the simulated annotator reads)
    val: Path                            # fixed validation set: never enters training
    seed_labels: Path | None = None      # the labeled set the first model is trained on
    initial_checkpoint: Path | None = None  # round 0 fine-tunes it on seed_labels (a path,
                                            # or a packaged one's name: clickpose pretrained)
    rounds: int = Field(3, ge=0)         # rounds after round 0
    budget_images: int | None = Field(20, ge=0)        # per round
    budget_clicks: float | None = Field(None, ge=0)    # per round, in predicted clicks
                                                       # (calibrated: calibrate_clicks)
    # Predicted clicks fitted to the clicks earlier rounds took (selection.click_calibration)
    # before they meet budget_clicks, top_per_click or k_center_per_click.
    calibrate_clicks: bool = True
    target_ap: float | None = None       # stop once val AP reaches it
    click_budget: float | None = None    # stop once the campaign has spent this many clicks
    scorer: Literal["least_confidence", "entropy", "expected_clicks", "random"] = \
        "least_confidence"
    # selection's strategies; the diversity ones (k_center, weighted_k_center,
    # k_center_per_click, cluster_top, typical_clusters) make pool scoring keep each image's
    # embedding (clickpose.model.embedding).
    strategy: Literal["top", "random", "top_per_click", "k_center", "weighted_k_center",
                      "k_center_per_click", "cluster_top", "typical_clusters"] = "top"
    selection_seed: int = 0
    shards: int = Field(2, ge=1)         # pool scoring fan-out
    score_batch_size: int = Field(8, ge=1)
    annotation: Literal["simulated", "human"] = "simulated"
    noc_val_images: int | None = 20      # NoC on the first N val images (AP uses all)
    noc_max_rounds: int = 17
    annotate_max_rounds: int = 17        # simulated annotator: rounds per image at most
    inference_threads: int | None = 1    # torch CPU threads for scoring, simulation, NoC:
                                         # one thread per small decoder pass is fastest on
                                         # a busy machine (more threads mostly wait)
    promote_metric: Literal["ap", "ap50", "ap75"] = "ap"   # higher is better
    promote_min_delta: float = 0.0
    train: TrainSettings = Field(default_factory=TrainSettings)
    initial_train_minutes: float | None = None  # round 0's budget (default train.max_minutes)
    fiftyone_dataset: str | None = None  # default clickpose-NAME
    annotator_port: int = 8765
    annotation_timeout_s: int = 7 * 24 * 3600

    @model_validator(mode="after")
    def _check_budgets(self) -> CampaignConfig:
        if self.budget_images is None and self.budget_clicks is None:
            raise ValueError("campaign config: budget_images and budget_clicks are both empty; "
                             "give a per-round budget in images, in predicted clicks, or both")
        if self.scorer != "expected_clicks":
            needs = ("budget_clicks" if self.budget_clicks is not None else
                     f"strategy '{self.strategy}'" if self.strategy in NEEDS_COSTS else None)
            if needs:
                raise ValueError(f"campaign config: {needs} needs the predicted clicks of every "
                                 f"image, which scorer '{self.scorer}' does not give; set scorer: "
                                 "expected_clicks")
        return self

    @property
    def needs_embeddings(self) -> bool:
        return self.strategy in NEEDS_EMBEDDINGS

    @property
    def dataset_name(self) -> str:
        return self.fiftyone_dataset or f"clickpose-{self.name}"

    def train_settings(self, round_index: int) -> TrainSettings:
        if round_index == 0 and self.initial_train_minutes is not None:
            return self.train.model_copy(update={"max_minutes": self.initial_train_minutes})
        return self.train

    def round_dir(self, round_index: int) -> Path:
        return Path(self.work) / f"round-{round_index:03d}"
