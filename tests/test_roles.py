"""Output roles: what each output means, where its batch axis is, and the figure that judges it.

The cases that broke (issue 28): a YOLOv8 detector whose static INT8 output 0.0 for every class score scored
5.5% relative error, close to a working INT8's 3.4%; a CTC recogniser whose INT8 decoded the same text was
rejected at "23% error"; a time-major [T, N, C] output counted T*N samples and a user metric got the wrong rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from mcbench.bench.accuracy import accuracy_of, collected
from mcbench.bench.metrics import ctc_decode, detector_parts, role_figures
from mcbench.bench.roles import (
    OutputRole,
    OutputRoleError,
    batch_axis,
    inferred_role,
    output_roles,
    yolox_grid,
)
from mcbench.reports.quality import over_budget_text, quality_metric, within_budget
from mcbench.reports.schema import LatencyStats, RunResult, VariantResult

RNG = np.random.default_rng(0)


def yolov8_head(n: int = 4, classes: int = 3, anchors: int = 300) -> np.ndarray:
    """[N, 4 + C, A]: boxes in pixels on a 320-px input, a few anchors scoring high on one class."""
    out = np.zeros((n, 4 + classes, anchors))
    out[:, 0:2] = RNG.uniform(40, 280, (n, 2, anchors))  # cx, cy
    out[:, 2:4] = RNG.uniform(20, 80, (n, 2, anchors))  # w, h
    out[:, 4:] = RNG.uniform(0, 0.1, (n, classes, anchors))
    for i in range(n):
        out[i, 4 + i % classes, RNG.choice(anchors, 5, replace=False)] = RNG.uniform(0.5, 0.95, 5)
    return out


def ctc_logits(texts: list[list[int]], steps: int = 12, classes: int = 20) -> np.ndarray:
    """[N, T, C] logits that decode greedily to `texts` (blank, index 0, between repeated characters)."""
    out = RNG.normal(0, 1, (len(texts), steps, classes))
    for i, text in enumerate(texts):
        path = [c for ch in text for c in (ch, 0)] + [0] * steps
        for t in range(steps):
            out[i, t, path[t]] += 10
    return out


def run_of(task: str, **variants: dict[str, float]) -> RunResult:
    samples = [1e-3 * (1 + 0.01 * (i % 7)) for i in range(50)]
    from mcbench.reports.schema import Accuracy

    results = [VariantResult(name, "onnxruntime", [], "ok", accuracy=Accuracy(None, 8, None, None, 0.0, 0.0, task=task,
                                                                                 metrics=metrics),
                             latency=LatencyStats.from_seconds(samples)) for name, metrics in variants.items()]
    return RunResult("r", "2026-12-07T00:00:00+00:00", {}, {"task": task}, {}, results, baseline=results[0].name)


def judged(roles: list[OutputRole], outputs: list[np.ndarray], baselines: list[np.ndarray]) -> dict[str, float]:
    return role_figures(roles, outputs, baselines)


# --- inference ---------------------------------------------------------------------------------------------------


def test_roles_are_inferred_from_shapes_values_and_names():
    probabilities = RNG.dirichlet(np.ones(10), 8)
    yolox = np.concatenate([RNG.uniform(10, 300, (2, 500, 4)), RNG.uniform(0, 1, (2, 500, 2))], axis=-1)
    cases = {
        "yolov8": yolov8_head(), "yolox": yolox, "sequence": ctc_logits([[1, 2], [3]]),
        "classes": probabilities, "scores": RNG.uniform(0, 1, (8, 5)),
        "real": RNG.normal(0, 1, (8, 1, 16, 16)),
    }
    for role, array in cases.items():
        assert inferred_role(array)[0] == role, role
    assert inferred_role(RNG.normal(0, 1, (8, 384)), count=2)[0] == "embedding"  # a vector beside another output
    assert inferred_role(RNG.normal(0, 1, (8, 384)), name="sentence_embedding")[0] == "embedding"
    assert inferred_role(RNG.normal(0, 1, (8, 1000)), count=1)[0] == "classes"  # the only [N, C] output: logits
    assert inferred_role(RNG.normal(0, 1, (8, 10)), count=3)[0] == "real"  # [N, 10] landmarks beside other outputs
    assert inferred_role(RNG.normal(0, 1, (8, 2, 128)), name="stateN")[0] == "real"
    assert inferred_role(RNG.normal(0, 1, (8, 12, 384)), name="last_hidden_state")[0] == "real"


def test_a_declared_role_wins_and_a_declaration_naming_no_output_is_refused():
    outputs = [yolov8_head(), RNG.normal(0, 1, (4, 2, 8))]
    roles = output_roles(["output0", "stateN"], outputs, {"stateN": "ignore"}, [0, 1])
    assert [(r.role, r.batch_axis) for r in roles] == [("yolov8", 0), ("ignore", 1)]
    assert roles[1].reason == "declared with --output"
    assert roles[0].line().startswith("output 'output0' (batch axis 0): yolov8 (a [N, 7, 300] head: 4 box rows")
    with pytest.raises(OutputRoleError, match=r"--output boxes: the model has no output 'boxes' \(its outputs: "
                                              r"output0, stateN\)"):
        output_roles(["output0", "stateN"], outputs, {"boxes": "real"})


def test_detector_heads_are_split_by_their_layout():
    v8 = np.zeros((1, 6, 3))
    v8[0, :4, 1] = [100, 50, 20, 10]  # anchor 1: cx, cy, w, h
    v8[0, 4:, 1] = [0.2, 0.7]
    boxes, scores = detector_parts("yolov8", v8)
    assert boxes.shape == (1, 3, 4) and scores.shape == (1, 3, 2)
    assert boxes[0, 1].tolist() == [90, 45, 110, 55] and scores[0, 1].tolist() == [0.2, 0.7]
    x = np.zeros((1, 3, 7))
    x[0, 2] = [100, 50, 20, 10, 0.5, 0.4, 0.8]  # cx, cy, w, h, objectness, two class scores
    boxes, scores = detector_parts("yolox", x)
    assert boxes[0, 2].tolist() == [90, 45, 110, 55] and scores[0, 2].tolist() == pytest.approx([0.2, 0.4])


def test_an_undecoded_yolox_head_is_recognised_by_its_grid_and_decoded_to_pixels():
    raw = np.zeros((1, 3549, 6))  # a 416-px input: 52^2 + 26^2 + 13^2 cells over strides 8, 16, 32
    raw[..., 4:] = RNG.uniform(0, 1, (1, 3549, 2))
    raw[..., :4] = RNG.normal(0, 1, (1, 3549, 4))  # offsets in cells, log sizes: negative widths
    role, reason = inferred_role(raw)
    assert role == "yolox" and "undecoded grid offsets on a 416-px YOLOX grid" in reason
    assert yolox_grid(3548) is None and yolox_grid(8400)[1][-1, 0] == 32  # 640 px: YOLOX's own default
    raw[0, 52 + 3, :4] = [0.5, 0.5, np.log(2), 0]  # cell (3, 1) at stride 8: centre (28, 12), 16 x 8 px
    boxes, _ = detector_parts("yolox", raw, decode=True)
    assert boxes[0, 55].tolist() == pytest.approx([20, 8, 36, 16])


# --- figures -----------------------------------------------------------------------------------------------------


def test_a_detector_whose_class_scores_collapse_fails_any_default_budget():
    base = yolov8_head()
    collapsed = base.copy()
    collapsed[:, 4:] = 0.0  # what static INT8 did to NudeNet: boxes intact, every class score 0.0
    shifted = base.copy()
    shifted[:, :4] += RNG.normal(0, 0.5, shifted[:, :4].shape)  # boxes half a pixel off: still the same boxes
    roles = [OutputRole("output0", "yolov8", "")]
    dead, fine = judged(roles, [collapsed], [base]), judged(roles, [shifted], [base])
    assert dead["output0.det_recall"] == 0 and dead["output0.det_f1"] == 0 and dead["worst_role"] == 0
    assert dead["output0.detections"] == 20
    assert fine["output0.det_f1"] == 1 and fine["output0.box_kept"] == 1 and 0.95 < fine["output0.box_iou"] < 1
    run = run_of("fidelity", fp32={"worst_role": 1.0}, dead={**dead}, fine={**fine})
    assert quality_metric(run).key == "worst_role"
    assert within_budget(run, run.variant("dead")) is False and within_budget(run, run.variant("fine")) is True
    assert over_budget_text(run, run.variant("dead")) == ("worst_role 0.0% (output0.det_f1), budget at most 1 point "
                                                          "below the baseline")
    constant = base.copy()
    constant[:, 4:] = 0.9  # every score high: recall 1, but nearly every detection is the variant's own
    assert judged(roles, [constant], [base])["output0.det_precision"] < 0.05


def test_boxes_that_move_off_their_objects_are_not_kept():
    base = yolov8_head()
    moved = base.copy()
    moved[:, 0] += 15  # every box 15 px to the right: w and h are 20-80 px
    figures = judged([OutputRole("o", "yolov8", "")], [moved], [base])
    assert figures["o.box_kept"] < 0.5 and figures["worst_role"] == figures["o.box_kept"]
    assert 0.1 < figures["o.box_err"] < 0.8


def test_a_ctc_variant_that_keeps_the_decoded_text_passes_and_one_that_changes_it_does_not():
    texts = [[1, 2, 2, 3], [4, 5], [6], [7, 7, 7], [8, 9, 1], [2], [3, 4], [5, 6]]
    base = ctc_logits(texts)
    assert [list(ctc_decode(s)) for s in base] == texts
    kept = base + RNG.normal(0, 0.3, base.shape)
    roles = [OutputRole("387", "sequence", "")]
    same = judged(roles, [kept], [base])
    assert same["387.sequence_agreement"] == 1 and same["worst_role"] == 1
    wrong = base.copy()
    wrong[0, 0, 9] += 50  # the first sample's first character read as 9
    changed = judged(roles, [wrong], [base])
    assert changed["387.sequence_agreement"] == 7 / 8 and changed["387.step_agreement"] == pytest.approx(1 - 1 / 96)
    run = run_of("fidelity", fp32={"worst_role": 1.0}, kept=same, changed=changed)
    assert within_budget(run, run.variant("kept")) is True and within_budget(run, run.variant("changed")) is False


def test_a_repeat_split_by_a_blank_is_two_characters_and_steps_may_differ_without_changing_the_text():
    steps = np.eye(5)[[1, 1, 0, 1, 2, 2, 0]]  # "1 1 _ 1 2 2 _" -> 1, 1, 2
    assert ctc_decode(steps) == (1, 1, 2)
    later = np.eye(5)[[0, 1, 0, 1, 1, 2, 0]]  # "_ 1 _ 1 1 2 _" -> 1, 1, 2: two steps differ
    figures = judged([OutputRole("s", "sequence", "")], [later[None]], [steps[None]])
    assert figures["s.sequence_agreement"] == 1 and figures["s.step_agreement"] == pytest.approx(5 / 7)


def test_the_blank_is_class_0_unless_the_last_class_wins_more_steps():
    zero_blank = np.eye(4)[[[0, 1, 0, 2, 0, 0]]]
    last_blank = np.eye(4)[[[3, 1, 3, 2, 3, 3]]]
    for steps, blank in ((zero_blank, 0), (last_blank, 3)):
        figures = judged([OutputRole("s", "sequence", "")], [steps], [steps])
        assert figures["s.ctc_blank"] == blank
    assert ctc_decode(last_blank[0], 3) == (1, 2)


def test_a_lossless_conversion_passes_on_every_role():
    outputs = [yolov8_head(), ctc_logits([[1], [2], [3], [4]]), RNG.dirichlet(np.ones(5), 4),
               RNG.uniform(0, 1, (4, 6)), RNG.normal(0, 1, (4, 128)), RNG.normal(0, 1, (4, 2, 16))]
    roles = [OutputRole(f"o{i}", role, "") for i, role in
             enumerate(["yolov8", "sequence", "classes", "scores", "embedding", "real"])]
    fp32 = [o * (1 + RNG.normal(0, 1e-7, o.shape)) for o in outputs]  # another runtime's rounding
    figures = judged(roles, fp32, outputs)
    assert figures["worst_role"] > 0.999
    governing = ["o0.det_f1", "o0.box_kept", "o1.sequence_agreement", "o2.argmax_agreement", "o3.score_f1",
                 "o4.cosine_mean", "o5.real_kept"]
    assert all(figures[k] > 0.999 for k in governing), {k: figures[k] for k in governing}


def test_logits_get_argmax_agreement_and_scores_that_collapse_lose_their_decisions():
    logits = RNG.normal(0, 3, (50, 10))
    flipped = logits.copy()
    flipped[:5] = -flipped[:5]  # five samples' argmax moves
    figures = judged([OutputRole("logits", "classes", "")], [flipped], [logits])
    assert figures["logits.argmax_agreement"] == pytest.approx(0.9)
    assert figures["argmax_agreement"] == pytest.approx(0.9)  # the run-level figure a budget can name
    scores = RNG.uniform(0, 1, (50, 4))
    dead = judged([OutputRole("p", "scores", "")], [np.zeros_like(scores)], [scores])
    assert dead["p.score_recall"] == 0 and dead["p.score_f1"] == 0


def test_real_values_are_judged_relative_to_each_channels_scale():
    base = np.stack([RNG.normal(0, 1000, 64), RNG.normal(0, 0.01, 64)], axis=1)  # two channels, 10^5 apart
    small_wrong = base.copy()
    small_wrong[:, 1] = 0  # the small channel lost: one tensor's mean relative error would not see it
    figures = judged([OutputRole("state", "real", "")], [small_wrong], [base])
    lost = np.mean(np.abs(base[:, 1])) / np.sqrt(np.mean(base[:, 1] ** 2))  # the small channel's error over its scale
    assert figures["state.channel_rel_err"] == pytest.approx(lost / 2)
    assert figures["state.real_kept"] < 0.7
    noise = judged([OutputRole("state", "real", "")], [base * (1 + RNG.normal(0, 1e-3, base.shape))], [base])
    assert noise["state.real_kept"] > 0.99


# --- batch axes ---------------------------------------------------------------------------------------------------


class TimeMajor:
    """A session whose one output is time-major, [T, N, C], as a CTC recogniser's is."""

    output_names = ["387"]

    def run(self, feeds):
        x = feeds["x"]  # [N, 4]
        return [np.stack([x * (t + 1) for t in range(6)])]  # [6, N, 4]


def test_time_major_outputs_are_concatenated_on_their_batch_axis_and_counted_by_inputs():
    samples = [{"x": RNG.normal(0, 1, (1, 4)).astype(np.float32)} for _ in range(5)]
    (outputs,), axes = collected(TimeMajor(), samples)
    assert axes == [1] and outputs.shape == (5, 6, 4)
    np.testing.assert_allclose(outputs[2, 3], samples[2]["x"][0] * 4, rtol=1e-6)
    seen = {}

    def metric(out, labels):
        seen["shape"] = out.shape
        return float(np.mean(out[:, 0].argmax(axis=1) == labels))

    acc = accuracy_of(outputs, outputs, np.zeros(5), "d.npz", "fidelity", metric,
                      roles=[OutputRole("387", "sequence", "", 1)])
    assert acc.samples == 5 and seen["shape"] == (5, 6, 4)  # 5 inputs, not 30 rows; the batch first for the metric
    assert acc.roles["387"].batch_axis == 1 and acc.metrics["worst_role"] == 1


def test_the_batch_axis_is_the_one_sized_like_the_rows_fed_and_the_graph_breaks_a_tie():
    assert batch_axis([(20, 1, 8210), (20, 1, 8210)], [1, 1]) == 1
    assert batch_axis([(2, 3, 128), (2, 3, 128)], [3, 3]) == 1  # a state [2, N, 128] at batch 3
    assert batch_axis([(1, 1), (1, 1)], [1, 1]) == 0  # either: the first
    assert batch_axis([(1, 1), (1, 1)], [1, 1], declared=1) == 1  # the graph says the second
    assert batch_axis([(5, 1, 7), (5, 1, 7)], [1, 1], declared=0) == 1  # a declaration the shapes refute
    assert batch_axis([(10,), (10,)], [1, 1]) is None  # not per sample: one row per run


def test_the_report_names_the_same_governing_figures_as_the_metrics():
    from mcbench.bench import metrics
    from mcbench.reports import quality

    assert set(metrics.GOVERNING.values()) == quality.GOVERNING  # quality.py is stdlib-only: it keeps its own copy


def test_an_output_flag_naming_no_output_fails_before_any_work(tmp_path):
    import subprocess
    import sys

    from tests.test_quality import make_two_output_onnx

    model = make_two_output_onnx(tmp_path / "two.onnx")
    proc = subprocess.run([sys.executable, "-m", "mcbench.cli", "run", "--model", str(model), "--no-load",
                           "--output", "boxes=real", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("mcbench: --output boxes: the model has no output 'boxes' "
                                                    "(its outputs: steps, box)")
    assert not (tmp_path / "run").exists()
