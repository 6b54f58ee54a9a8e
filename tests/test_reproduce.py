"""The reproduction study's runner (experiments/reproduce_fmnist) in quick mode: every arm trains and is
evaluated, the report is written, and a second launch skips finished runs."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "reproduce_fmnist" / "run_study.py"


@pytest.fixture(scope="module")
def study_module():
    spec = importlib.util.spec_from_file_location("run_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_study"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_quick_study_runs_every_arm_reports_and_skips_finished_runs(study_module, tmp_path, fmnist_root,
                                                                     monkeypatch):
    runs = tmp_path / "runs"
    report = tmp_path / "report.md"
    assert study_module.main(["--mode", "quick", "--runs-dir", str(runs), "--report", str(report),
                              "--data-root", fmnist_root]) == 0

    study = study_module.Study.load("quick", runs)
    planned = study.all_runs()
    spec = study.spec
    n_seeds, n_widths = len(spec["modes"]["quick"]["seeds"]), len(spec["widths"])
    # alpha sweep + (SlimGAN + one individual GAN per width) per further seed + first-seed individuals
    # + ablations + conditional arms
    expected = (len(spec["alpha_sweep"]) + (n_seeds - 1) + n_seeds * n_widths + len(spec["ablations"])
                + len(spec["conditional"]))
    assert len(planned) == expected
    records = {r.name: study_module.read_record(r.folder(runs)) for r in planned}
    assert all(records.values()), [n for n, r in records.items() if r is None]
    for run in planned:
        rec = records[run.name]
        widths = [r["width"] for r in rec["widths"]]
        if run.arm == "individual":
            assert widths == [run.width]  # one ordinary GAN at that width
        elif run.name.endswith("widths_8_seed0"):
            assert len(widths) == 8
        else:
            assert widths == spec["widths"]
        assert rec["iterations"] > 0 and rec["train_seconds"] > 0
        assert (run.folder(runs) / "checkpoints" / "last.ckpt").is_file()
        assert (run.folder(runs) / "config_resolved.yaml").is_file()
    # the individual GANs' generator is the width's slice: same active parameters as SlimGAN's width
    alpha = study.chosen_alpha()
    assert alpha in spec["alpha_sweep"]
    slim = {r["width"]: r for r in records[study_module.slimgan_name(alpha, 0)]["widths"]}
    for w in spec["widths"]:
        indiv = records[f"individual_w{w:g}_seed0"]["widths"][0]
        assert indiv["params"] == slim[w]["params"] and indiv["macs"] == slim[w]["macs"]

    text = report.read_text()
    for heading in ("Distillation weight", "SlimGAN vs individually trained GANs", "Consistency between widths",
                    "Training wall time", "Ablations", "scBN vs switchable CBN", "Which claims held"):
        assert heading in text
    assert f"Chosen alpha: **{alpha:g}**" in text and "pending" not in text
    assets = report.with_suffix("")
    assert (assets / "fid_vs_macs.png").stat().st_size > 1000
    assert (assets / "slimgan_vs_individual.png").stat().st_size > 500

    # Second launch: nothing is trained again, and finished records stay as they were.
    stamps = {n: os.stat(r.folder(runs) / "study_record.json").st_mtime_ns for n, r in zip(records, planned)}
    monkeypatch.setattr(study_module, "execute", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert study_module.main(["--mode", "quick", "--runs-dir", str(runs), "--report", str(report),
                              "--data-root", fmnist_root]) == 0
    assert stamps == {n: os.stat(r.folder(runs) / "study_record.json").st_mtime_ns for n, r in zip(records, planned)}


def test_interrupted_run_resumes_from_its_checkpoint(study_module, tmp_path, fmnist_root):
    runs = tmp_path / "runs"
    study = study_module.Study.load("quick", runs)
    run = study.conditional_runs()[0]
    classifier = study_module.quick_classifier(runs, fmnist_root)
    first = study_module.execute(run, study, classifier, fmnist_root)
    assert first["resumed"] is False
    # An interruption after the last checkpoint but before the record was written:
    (run.folder(runs) / "study_record.json").unlink()
    again = study_module.execute(run, study, classifier, fmnist_root)
    assert again["resumed"] is True and again["iterations"] == first["iterations"]
    assert json.loads((run.folder(runs) / "study_record.json").read_text())["resumed"] is True


def test_run_stopped_by_a_signal_is_not_recorded_as_finished(study_module, tmp_path, fmnist_root, monkeypatch):
    """SIGTERM/USR1 make train() save last.ckpt and return early: the run must stay pending (and
    resumable), not be evaluated and recorded with fewer iterations."""
    import slimgan_pl.train

    runs = tmp_path / "runs"
    study = study_module.Study.load("quick", runs)
    run = study.alpha_runs()[0]
    monkeypatch.setattr(slimgan_pl.train, "train", lambda cfg: {"iterations": 1, "preempted": True})
    with pytest.raises(SystemExit, match=f"{run.name} stopped by a signal at iteration 1"):
        study_module.execute(run, study, None, fmnist_root)
    assert study_module.read_record(run.folder(runs)) is None
