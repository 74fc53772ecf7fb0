"""bench/click_effect.py's measures on hand-made records (its run on a trained checkpoint is
in test_bench_train_synthetic.py)."""
import numpy as np
from bench_scripts import load_bench

effect = load_bench("click_effect")

LABELLED = np.array([True, True, True, True, False])


def _record(before, after, clicked, errors, first=True, scale=10.0):
    return {"first": first, "labelled": LABELLED, "clicked": clicked,
            "before": np.array(before, dtype=float), "after": np.array(after, dtype=float),
            "errors": np.array(errors, dtype=float), "scale": scale}


def test_clicks_to_oks_clicks_the_worst_in_pixels_until_the_target():
    terms = np.array([0.5, 0.5, 1.0, 1.0, 0.0])
    errors = np.array([3.0, 1.0, 0.0, 0.0, 9.0])  # the unlabelled one is never clicked
    assert effect.clicks_to_oks(terms, errors, LABELLED) == 2
    assert effect.clicks_to_oks(terms, errors, LABELLED, target=0.8) == 1
    assert effect.clicks_to_oks(np.ones(5), np.zeros(5), LABELLED) == 0


def test_click_gain_compares_the_click_alone_with_the_re_prediction():
    helped = _record([0.2, 0.5, 0.9, 1.0, 0.0], [1.0, 0.9, 0.9, 1.0, 0.0], clicked=0,
                     errors=[8, 3, 1, 0, 0])
    hurt = _record([0.2, 0.5, 0.9, 1.0, 0.0], [1.0, 0.4, 0.9, 1.0, 0.0], clicked=0,
                   errors=[8, 3, 1, 0, 0])
    gain = effect.click_gain([helped, hurt])
    assert gain["clicks"] == 2 and gain["oks_click_only"] == round((1 + .5 + .9 + 1) / 4, 4)
    assert gain["refine_better"] == 0.5 and gain["refine_worse"] == 0.5
    # Free keypoints: 1 and 2 of each (3 was clicked before: its term is 1).
    assert gain["other_keypoints"] == 4
    assert gain["other_closer"] == 0.25 and gain["other_farther"] == 0.25


def test_error_share_counts_the_clicks_large_errors_cost():
    # Keypoint 0 is off by 5 px on a person of scale 10: large at 0.15.
    first = _record([0.0, 0.5, 1.0, 1.0, 0.0], [1.0, 0.5, 1.0, 1.0, 0.0], clicked=0,
                    errors=[5.0, 1.0, 0.0, 0.0, 0.0])
    later = _record([1.0, 0.6, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0, 0.0], clicked=1,
                    errors=[0.0, 1.0, 0.0, 0.0, 0.0], first=False)
    share = effect.error_share([first, later], large=0.15)
    assert share["persons"] == 1 and share["large_keypoint_share"] == 0.25
    assert share["clicks_per_person"] == 2 and share["clicks_per_person_large_free"] == 1
    assert share["share_of_clicks_on_large"] == 0.5
