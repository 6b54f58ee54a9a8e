"""The reproduction study's runner (experiments/reproduce_fmnist): its statistics on known inputs, its plan
and time estimate, and the whole pipeline in quick mode (SlimGAN vs native baselines, FID curves,
paired t verdicts, report, a second launch that skips finished runs)."""

import json
import os
import re
import shutil
import sys

import pytest

from slimgan_pl.metrics.paired import paired_comparison, verdict

from helpers.scripts import load_script


@pytest.fixture(scope="module")
def study_module():
    return load_script("experiments/reproduce_fmnist/run_study.py")


# ---------------------------------------------------------------------- statistics on known inputs
def test_verdict_is_a_non_inferiority_decision():
    assert verdict(-5.0, -1.0, margin=1.0) == "held"  # better throughout
    assert verdict(-1.0, 0.5, margin=1.0) == "held"  # at most the margin worse: matches
    assert verdict(2.0, 6.0, margin=1.0) == "not held"  # worse by more than the margin throughout
    assert verdict(-1.0, 3.0, margin=1.0) == "undecided"  # the interval straddles the margin
    assert verdict(0.5, 1.0, margin=1.0) == "undecided"  # touching the margin decides nothing
    with pytest.raises(ValueError):
        verdict(1.0, 0.0, margin=1.0)


def test_report_rows_carry_the_paired_t_interval_its_n_and_the_seeds_to_decide(study_module, tmp_path):
    """The committed bf16 differences at 0.25x (+2.40, +1.13, +1.23) against a native FID of 10 at every
    seed: mean 1.587, sd 0.7061, t(0.975, 2) = 4.3027, half-width 1.754 -> [-0.17, +3.34] vs margin 1.00:
    undecided; the cell names the interval, the method, n, the seeds to decide and the sign-flip p (0.25:
    the smallest an all-positive triple can reach)."""
    study = study_module.Study.load("full", tmp_path)
    diffs = [2.40, 1.13, 1.23]

    def record(fids):
        return {"widths": [{"width": w, "fmnist_fid": f} for w, f in zip(study.widths, fids)]}

    records = {}
    for s, d in zip(study.seeds, diffs):
        records[f"slimgan_seed{s}"] = record([10.0 + d, 9.0, 10.0, 10.0])
        for w in study.widths:
            records[f"native_w{w:g}_seed{s}"] = record([10.0] * 4)
    rows = study_module.main_comparison(study, records)
    row = rows[0]
    mean, sd = 1.5866667, 0.7061397
    half = 4.3026527 * sd / 3**0.5
    assert row["mean_diff"] == pytest.approx(mean) and row["n"] == 3 and row["method"] == "paired t"
    assert row["low"] == pytest.approx(mean - half) and row["high"] == pytest.approx(mean + half)
    assert row["margin"] == pytest.approx(1.0) and row["verdict"] == "undecided" and row["seeds_to_decide"] > 3
    cell = study_module.decision_cells(row)
    assert cell == (
        f"+2.40, +1.13, +1.23 | +1.59 | 1.00 | **undecided**: [-0.17, +3.34], paired t, n=3; "
        f"~{row['seeds_to_decide']} seeds to decide | 0.25"
    )
    # 0.5x: SlimGAN 1.0 better at every seed, no spread: held on the point interval, no seeds to decide
    assert rows[1]["verdict"] == "held" and (rows[1]["low"], rows[1]["high"]) == (-1.0, -1.0)
    assert "**held**: [-1.00, -1.00], paired t, n=3 |" in study_module.decision_cells(rows[1])
    # a seed missing one arm: the row stays pending
    del records["native_w0.25_seed2"]
    assert study_module.main_comparison(study, records)[0]["verdict"] == "pending"


def test_aggregate_curves_uses_the_iterations_every_seed_has(study_module):
    curves = [[(250, 40.0), (500, 20.0)], [(250, 60.0), (500, 30.0), (750, 10.0)]]
    assert study_module.aggregate_curves(curves) == [(250, 50.0, 40.0, 60.0), (500, 25.0, 20.0, 30.0)]


# ---------------------------------------------------------------------- plan and time
def test_ablation_mic_is_over_the_tables_widths(study_module):
    # a 3-width run in a 2-width table: only the (0.5, 1.0) pair counts; a run at the table's widths
    # keeps its own mIC; the row's mIC cell is the shared-width one
    pairs = {"0.25-0.5": 9.0, "0.25-1.0": 12.0, "0.5-1.0": 3.0}
    wider = {"widths": [{"width": w, "fmnist_fid": 1.0} for w in (0.25, 0.5, 1.0)], "train_seconds": 5.0}
    wider["consistency"] = {"mIC": 8.5, "pairs": pairs}  # not the pairs' mean (8.0): the stored value is used
    assert study_module.mic_over(wider, [0.5, 1.0]) == 3.0
    assert study_module.mic_over(wider, [1.0, 0.5, 0.25]) == 8.5
    assert study_module.mic_over({**wider, "consistency": None}, [0.5, 1.0]) is None
    assert study_module.run_row("w3", wider, [0.5, 1.0]) == "| w3 | 1.00 | 1.00 | 3.00 | 5 |"


def test_plan_lists_the_arms_and_estimates_the_time(study_module, tmp_path):
    study = study_module.Study.load("full", tmp_path)
    names = [r.name for r in study.all_runs()]
    widths, seeds = study.widths, study.seeds
    assert len(seeds) == 3 and study.g_steps >= 2000
    for s in seeds:  # paired: every seed has SlimGAN and one native network (full D) per width
        assert f"slimgan_seed{s}" in names and all(f"native_w{w:g}_seed{s}" in names for w in widths)
    native = next(r for r in study.main_runs() if r.arm == "native" and r.width == 0.25)
    assert "model.baseline.g_width=0.25" in native.overrides and "model.baseline.d_width=1.0" in native.overrides
    narrow = study.narrow_d_runs()
    assert [r.width for r in narrow] == [0.25, 0.5, 0.75]  # at 1.0 the narrow D is the main run's D
    assert all(f"model.baseline.d_width={r.width}" in r.overrides for r in narrow)
    arms = {r.arm for r in study.ablation_runs()}
    assert {
        "alpha0",
        "alpha5",
        "plain_distillation",
        "n_share_0",
        "n_share_max",
        "n_share_-1",
        "widths_8",
        "cond_scbn",
        "cond_switchable",
    } <= arms
    lines = study.plan_lines()
    assert any(line.startswith("total") for line in lines)
    assert "does NOT fit the 3 h limit" in lines[-1] and "main comparison" in lines[-1]  # honest: 2000 steps
    assert study_module.Study.load("full", tmp_path, g_steps=300).plan_lines()[-1] == "fits the 3 h limit"
    # estimates follow the cost model: SlimGAN per step x steps + FID points + evaluation + startup
    c = study.spec["cost"]
    slim = study.main_runs()[0]
    expected = (
        c["startup"] + c["slimgan_per_step"] * 2000 + (2000 // 250) * 4 * c["fid_per_width"] + 4 * c["eval_per_width"]
    )
    assert study.estimate_seconds(slim) == pytest.approx(expected)


def test_full_mode_keeps_the_committed_report_until_the_main_comparison_ran(study_module, tmp_path, capsys):
    before = study_module.FULL_REPORT.stat().st_mtime_ns
    no_store = ["--committed-records", "none"]
    assert study_module.main(["--runs-dir", str(tmp_path), "--report-only", *no_store]) == 0
    assert study_module.FULL_REPORT.stat().st_mtime_ns == before
    text = (tmp_path / "report.md").read_text()
    assert "pending" in text and "does NOT fit" in capsys.readouterr().out
    assert study_module.main(["--runs-dir", str(tmp_path), "--plan", *no_store]) == 0
    assert "pending  slimgan_seed0" in capsys.readouterr().out


def test_committed_records_match_the_plan_and_are_adopted_by_default(study_module, tmp_path, capsys):
    """The committed records.json is the study's memory across machines: every record in it must still be
    the run study.yaml plans (else a relaunch would silently retrain it); --plan marks them, writing
    nothing; a launch adopts them, and its report matches the committed one without touching it."""
    stored = json.loads(study_module.COMMITTED_RECORDS.read_text())
    study = study_module.Study.load("full", tmp_path / "runs")
    for arm, seeds in study.seeds_named_in(list(stored)).items():  # seeds a --seeds auto launch added, if any
        study.add_seeds(arm, seeds)
    planned = {r.name: r for r in study.all_runs()}
    assert all(f"slimgan_seed{s}" in stored for s in study.seeds)
    for name, rec in stored.items():
        assert name in planned and rec["overrides"] == planned[name].overrides and rec["mode"] == "full", name
    runs = tmp_path / "runs"
    assert study_module.main(["--runs-dir", str(runs), "--plan"]) == 0
    assert "adopt    slimgan_seed0" in capsys.readouterr().out and not runs.exists()

    before = study_module.FULL_REPORT.stat().st_mtime_ns
    assert study_module.main(["--runs-dir", str(runs), "--report-only"]) == 0
    assert f"adopted {len(stored)} finished runs" in capsys.readouterr().out
    assert study_module.FULL_REPORT.stat().st_mtime_ns == before  # nothing trained here: report in the runs folder
    rec = study_module.read_record(runs / "slimgan_seed0")
    assert rec["adopted_from"].endswith("records.json") and rec["checkpoint"] is None
    committed = study_module.FULL_REPORT.read_text()
    text = (runs / "report.md").read_text()
    for line in committed.splitlines():  # verdicts, per-seed FIDs, mIC of the main comparison
        if line.startswith(("| 0.", "| 1 |", "- width", "| SlimGAN (one", "| the native")):
            assert line in text, line


def test_a_bad_store_of_records_is_refused_with_its_name(study_module, tmp_path):
    good = json.loads(study_module.COMMITTED_RECORDS.read_text())
    one = dict(next(iter(good.values())))
    del one["widths"]
    cases = {  # file -> (content, what the error says right after the file's path)
        "list.json": ("[1, 2]", " must map run names to study records"),
        "int.json": ('{"slimgan_seed0": 3}', " must map run names to study records"),
        "missing.json": (json.dumps({"slimgan_seed0": one}), ": the record of 'slimgan_seed0' lacks ['widths']"),
        "broken.json": ("{not json", " cannot be read as JSON"),
        "no.json": (None, " is not a file"),
        "": (None, " is not a file"),  # a folder
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(SystemExit, match=re.escape(f"--committed-records {path}{message}")):
            study_module.main(["--runs-dir", str(tmp_path / "r"), "--plan", "--committed-records", str(path)])


# ---------------------------------------------------------------------- the pipeline at toy size
def test_a_run_is_claimed_by_one_live_worker(study_module, tmp_path):
    import subprocess

    folder = tmp_path / "run"
    assert study_module.claim_run(folder) is True
    assert study_module.claim_run(folder) is False  # held by a live process (this one)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / study_module.CLAIM).write_text(dead.stdout.strip())
    assert study_module.claim_run(folder) is True  # its holder died: taken over
    assert (folder / study_module.CLAIM).read_text() == str(os.getpid())


def test_quick_study_runs_every_arm_reports_and_skips_finished_runs(study_module, tmp_path, fmnist_root, monkeypatch):
    runs = tmp_path / "runs"
    report = tmp_path / "report.md"
    argv = ["--mode", "quick", "--runs-dir", str(runs), "--report", str(report), "--data-root", fmnist_root]
    assert study_module.main([*argv, "--workers", "2"]) == 0  # two worker processes share the plan
    assert not list(runs.glob(f"*/{study_module.CLAIM}"))  # every claim released

    study = study_module.Study.load("quick", runs)
    planned = study.all_runs()
    statuses = {r.name: study_module.run_status(r, runs) for r in planned}
    # n_share=-1 comes with another branch: refused (recorded, retried later) or trained; nothing else refused
    assert all(st == "done" for name, st in statuses.items() if "n_share_-1" not in name), statuses
    records = {r.name: study_module.read_record(r.folder(runs)) for r in planned if statuses[r.name] == "done"}
    fid_every = study.mode_spec["fid_every"]
    for run in planned:
        rec = records.get(run.name)
        if rec is None:
            assert "n_share" in json.loads((run.folder(runs) / "refused.json").read_text())["error"]
            continue
        assert [r["width"] for r in rec["widths"]] == run.widths
        assert rec["iterations"] == run.g_steps and rec["train_seconds"] > 0
        # the FID curve of every width from the training callback, at every fid_every steps
        assert sorted(map(float, rec["fid_curves"])) == run.widths
        assert all(
            [it for it, _ in pts] == list(range(fid_every, run.g_steps + 1, fid_every))
            for pts in rec["fid_curves"].values()
        )
    # the native baseline has exactly the active parameters and MACs of SlimGAN's width (param-matched)
    slim = {r["width"]: r for r in records["slimgan_seed0"]["widths"]}
    for w in study.widths:
        native = records[f"native_w{w:g}_seed0"]["widths"][0]
        assert native["params"] == slim[w]["params"] and native["macs"] == slim[w]["macs"]

    # the fast mode is the SlimGAN arm with its precision override, paired with the fp32 arm by seed
    for s in study.seeds:
        fast = next(r for r in planned if r.name == f"slimgan_bf16_seed{s}")
        assert fast.overrides[-1] == "trainer.precision=bf16-mixed"
        assert fast.overrides[:-1] == next(r for r in planned if r.name == f"slimgan_seed{s}").overrides
    for row in study_module.fast_mode_comparison(study, records, "bf16"):
        assert row["native"] == [study_module.fid_at(records[f"slimgan_seed{s}"], row["width"]) for s in study.seeds]
        assert row["slimgan"] == [
            study_module.fid_at(records[f"slimgan_bf16_seed{s}"], row["width"]) for s in study.seeds
        ]
        # bf16 minus fp32, judged against 10% of the fp32 mean FID
        assert row["diffs"] == [a - b for a, b in zip(row["slimgan"], row["native"])]
        assert row["margin"] == pytest.approx(0.10 * sum(row["native"]) / len(row["native"]))
        assert row["verdict"] == verdict(row["low"], row["high"], row["margin"])
        expected = paired_comparison(row["slimgan"], row["native"], row["margin"])  # the paired t interval
        assert (row["low"], row["high"], row["n"], row["method"]) == (expected.low, expected.high, 2, "paired t")

    # verdicts computed from the paired FIDs of the records
    rows = study_module.main_comparison(study, records)
    for row in rows:
        s_fids = [
            records[f"slimgan_seed{s}"]["widths"][study.widths.index(row["width"])]["fmnist_fid"] for s in study.seeds
        ]
        assert row["slimgan"] == s_fids and row["verdict"] in study_module.VERDICTS
        assert row["low"] <= row["mean_diff"] <= row["high"]
    text = report.read_text()
    for heading in (
        "Per-width verdict",
        "Narrow-D variant",
        "Fast training mode `bf16` vs fp32",
        "FMNIST-FID during training",
        "Consistency between widths",
        "Training wall time",
        "Ablations",
        "scBN vs switchable CBN",
        "Samples",
        "Verdicts (computed",
    ):
        assert heading in text
    for row in rows:
        assert f"- width {row['width']:g}: **{row['verdict']}**" in text
    lo, hi = sorted(study_module.fid_at(records[f"slimgan_seed{s}"], study.widths[0]) for s in study.seeds)
    assert f"| SlimGAN reference, range over its 2 seeds | {lo:.2f}-{hi:.2f} |" in text
    assets = report.with_suffix("")
    assert (assets / "fid_curves.png").stat().st_size > 5000
    assert (assets / "slimgan_vs_native.png").stat().st_size > 500
    mic = json.loads((runs / "consistency_seed0.json").read_text())
    assert mic["slimgan"]["mIC"] >= 0 and mic["native"]["mIC"] >= 0

    # Second launch: nothing is trained again, and finished records stay as they were.
    stamps = {n: os.stat(runs / n / "study_record.json").st_mtime_ns for n in records}

    def execute_again(run, *args, **kwargs):
        if statuses[run.name] == "done":
            pytest.fail(f"the finished run {run.name} was trained again")
        raise study_module.RunRefused("still refused")  # a refused arm is tried again at every launch

    monkeypatch.setattr(study_module, "execute", execute_again)
    assert (
        study_module.main(
            ["--mode", "quick", "--runs-dir", str(runs), "--report", str(report), "--data-root", fmnist_root]
        )
        == 0
    )
    assert stamps == {n: os.stat(runs / n / "study_record.json").st_mtime_ns for n in records}

    # Another machine (empty runs folder, no checkpoints): the report's records.json is adopted, nothing
    # is retrained, and the report is the same (mIC from consistency.json, the same-z grid copied);
    # a stored record that no longer matches the plan is retrained, and its seed's stored mIC is not used.
    store = assets / "records.json"
    edited = json.loads(store.read_text())
    edited["native_w0.5_seed1"]["overrides"].append("slim.alpha=1")
    changed = tmp_path / "changed" / "records.json"
    changed.parent.mkdir()
    changed.write_text(json.dumps(edited))
    for src in ("consistency.json", "slimgan_vs_native.png"):
        (changed.parent / src).write_bytes((assets / src).read_bytes())
    trained = []

    def execute_elsewhere(run, *args, **kwargs):
        trained.append(run.name)
        raise study_module.RunRefused("not here")

    monkeypatch.setattr(study_module, "execute", execute_elsewhere)
    other, other_report = tmp_path / "elsewhere", tmp_path / "elsewhere_report.md"
    argv = ["--mode", "quick", "--runs-dir", str(other), "--report", str(other_report), "--data-root", fmnist_root]
    argv += ["--classifier", str(runs / "quick_classifier.pt")]  # the records' classifier (its hash is checked)
    assert study_module.main([*argv, "--committed-records", str(changed)]) == 0
    refused = {n for n, st in statuses.items() if st == "refused"}
    assert set(trained) == {"native_w0.5_seed1"} | refused
    adopted = {n for n in records if study_module.read_record(other / n)}
    assert adopted == set(records) - {"native_w0.5_seed1"}
    assert not any((other / n / "checkpoints").exists() for n in adopted)
    assert (other / "consistency_seed0.json").is_file() and not (other / "consistency_seed1.json").exists()
    # scored with another classifier: not adopted
    shutil.rmtree(other)
    trained.clear()
    from slimgan_pl.metrics import fmnist_classifier as fc

    loaded = fc.read_classifier(runs / "quick_classifier.pt")
    next(loaded.model.parameters()).data.add_(0.01)
    other_classifier = fc.save_classifier(loaded.model, tmp_path / "other_classifier.pt", loaded.test_accuracy)
    argv_other = [*argv[:-1], str(other_classifier)]
    assert study_module.main([*argv_other, "--committed-records", str(store), "--report-only"]) == 0
    assert not any(study_module.read_record(other / n) for n in records)
    shutil.rmtree(other)
    # with the unchanged store the report matches the original, line for line where runs are concerned
    trained.clear()
    assert study_module.main([*argv, "--committed-records", str(store)]) == 0
    assert set(trained) == refused
    again = other_report.read_text()
    for line in text.splitlines():
        if line.startswith(("| ", "- width")) and "h of training" not in line:
            assert line in again, line
    assert "adopted from" in again
    assert (other_report.with_suffix("") / "slimgan_vs_native.png").read_bytes() == (
        assets / "slimgan_vs_native.png"
    ).read_bytes()


def test_interrupted_run_resumes_from_its_checkpoint(study_module, tmp_path, fmnist_root):
    runs = tmp_path / "runs"
    study = study_module.Study.load("quick", runs)
    run = next(r for r in study.ablation_runs() if r.kind == "conditional")
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
    run = study.main_runs()[0]
    monkeypatch.setattr(slimgan_pl.train, "train", lambda cfg: {"iterations": 1, "preempted": True})
    with pytest.raises(SystemExit, match=f"{run.name} stopped by a signal at iteration 1"):
        study_module.execute(run, study, None, fmnist_root)
    assert study_module.read_record(run.folder(runs)) is None


# ---------------------------------------------------------------------- --seeds auto
def fake_trainer(study_module, fast_diff, native_diff=lambda seed: 0.0):
    """An ``execute`` that trains nothing: it writes the record a run would leave, FMNIST-FID 10 for fp32
    SlimGAN, 10 + fast_diff(seed) for bf16 and 10 - native_diff(seed) for a native network, and counts calls."""
    from dataclasses import asdict

    trained = []

    def execute(run, study, classifier, data_root):
        trained.append(run.name)
        fid = 10.0 + (fast_diff(run.seed) if run.arm == "bf16" else 0.0)
        fid -= native_diff(run.seed) if run.arm == "native" else 0.0
        record = {
            **asdict(run),
            "mode": study.mode,
            "iterations": run.g_steps,
            "resumed": False,
            "train_seconds": 1.0,
            "eval_seconds": 0.1,
            "checkpoint": None,
            "widths": [{"width": w, "fmnist_fid": fid, "macs": 1e6, "params": 1} for w in run.widths],
            "consistency": None,
            "extractor": {"test_accuracy": 0.9, "sha256": "stub"},
            "evaluate": {"n_fake": 100, "n_real": 100, "split": "test", "threads": 1},
            "fid_curves": {},
        }
        run.folder(study.root).mkdir(parents=True, exist_ok=True)
        (run.folder(study.root) / "study_record.json").write_text(json.dumps(record))
        return record

    return execute, trained


def test_seeds_auto_adds_seeds_to_the_fast_arm_until_it_is_decided(study_module, tmp_path, monkeypatch, capsys):
    """bf16 - fp32 = 0.0, 0.6, 0.1, 0.2 at seeds 0-3 against a margin of 1.0 (10% of 10): the paired t
    interval's upper end is 3.0 at 2 seeds, 1.03 at 3 (undecided), 0.64 at 4 (held): the launch trains
    seeds 2 and 3 of the fast arm only (fp32 partner + bf16), stops there, and the report says n=4. With
    --workers the rounds go to worker processes that plan from the runs folder and claim each run."""
    diffs = {0: 0.0, 1: 0.6, 2: 0.1, 3: 0.2, 4: 0.1, 5: 0.1}
    execute, trained = fake_trainer(study_module, diffs.__getitem__)
    monkeypatch.setattr(study_module, "execute", execute)
    runs, report = tmp_path / "runs", tmp_path / "report.md"

    def workers(argv, n, log=print):  # what a worker process does, in this process (the stub is here)
        names = argv[argv.index("--only") + 1 :]
        fresh = study_module.Study.load("quick", runs)  # a worker sees the added seed through the runs folder
        assert set(names) <= {r.name for r in fresh.all_runs()} and n == 2
        study_module.run_all(fresh, None, "", only=names, shared=True)
        return 0

    monkeypatch.setattr(study_module, "run_workers", workers)
    argv = ["--mode", "quick", "--runs-dir", str(runs), "--report", str(report), "--classifier", str(tmp_path / "c")]
    auto = ["--seeds", "auto", "--arm", "fast", "--max-seeds", "6"]
    assert study_module.main([*argv, *auto, "--workers", "2"]) == 0
    assert "every verdict of the fast arm is decided at 4 paired seeds" in capsys.readouterr().out
    assert sorted(trained) == sorted(f"slimgan{m}_seed{s}" for m in ("", "_bf16") for s in range(4))
    assert json.loads((runs / study_module.EXTRA_SEEDS_FILE).read_text()) == {"main": [], "fast": [2, 3]}
    assert not list(runs.glob(f"*/{study_module.CLAIM}"))
    text = report.read_text()
    assert "## Fast training mode `bf16` vs fp32 (SlimGAN, 4 seeds, paired)" in text
    assert "| +0.00, +0.60, +0.10, +0.20 | +0.22 | 1.00 | **held**: [-0.19, +0.64], paired t, n=4 | 0.25 |" in text
    assert "SlimGAN vs native networks with a full-size D (2 seeds, paired)" in text  # the main arm untouched
    # decided: a second launch trains nothing and adds no seed
    trained.clear()
    assert study_module.main([*argv, *auto]) == 0 and trained == []


def test_seeds_auto_stops_at_max_seeds_and_resumes_in_a_later_sitting(study_module, tmp_path, monkeypatch, capsys):
    """Differences of -2 / +2 never decide: the launch stops at --max-seeds; a later one with a higher
    limit adds only the next seed (nothing retrained), --plan shows the next round and its time, a plain
    report keeps the added seeds, and --arm main then reuses the fp32 SlimGAN runs the fast arm trained."""
    alternating = lambda seed: 2.0 if seed % 2 else -2.0  # noqa: E731
    execute, trained = fake_trainer(study_module, alternating, native_diff=alternating)
    monkeypatch.setattr(study_module, "execute", execute)
    runs, report = tmp_path / "runs", tmp_path / "report.md"
    argv = ["--mode", "quick", "--runs-dir", str(runs), "--report", str(report), "--classifier", str(tmp_path / "c")]
    fast = ["--seeds", "auto", "--arm", "fast"]
    assert study_module.main([*argv, *fast, "--max-seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "--max-seeds 3 reached, 2 undecided (bf16 vs fp32 0.5: ~" in out
    assert {n for n in trained if "seed2" in n} == {"slimgan_seed2", "slimgan_bf16_seed2"}
    assert not any("seed3" in n or n.startswith("native") for n in trained)

    assert study_module.main([*argv, "--plan", *fast, "--max-seeds", "5"]) == 0
    plan = capsys.readouterr().out
    assert "--seeds auto, fast arm: 3 paired seeds now ([0, 1, 2]), --max-seeds 5" in plan
    assert "next round: seed 3, 2 runs (slimgan_seed3 ~" in plan and "seeds estimated to decide" in plan
    assert "up to 2 rounds (seeds 3-4) until --max-seeds" in plan

    trained.clear()
    assert study_module.main([*argv, *fast, "--max-seeds", "4"]) == 0
    assert sorted(trained) == ["slimgan_bf16_seed3", "slimgan_seed3"]  # seeds 0-2 are not trained again
    assert study_module.main([*argv, "--report-only"]) == 0  # a plain launch keeps the added seeds
    assert "`bf16` vs fp32 (SlimGAN, 4 seeds, paired)" in report.read_text()

    trained.clear()  # the main arm: natives for seeds 0-1, then seed 2 with the fp32 SlimGAN run already there
    assert study_module.main([*argv, "--seeds", "auto", "--max-seeds", "3"]) == 0
    assert sorted(trained) == sorted(f"native_w{w}_seed{s}" for w in ("0.5", "1") for s in range(3))
    assert json.loads((runs / study_module.EXTRA_SEEDS_FILE).read_text()) == {"main": [2], "fast": [2, 3]}
    # another machine: the report's records.json brings the added seeds (found from the run names) to the plan
    capsys.readouterr()
    store = ["--committed-records", str(report.with_suffix("") / "records.json")]
    assert study_module.main(["--mode", "quick", "--runs-dir", str(tmp_path / "other"), "--plan", *store]) == 0
    plan = capsys.readouterr().out
    assert "adopt    slimgan_bf16_seed3" in plan and "adopt    native_w1_seed2" in plan
    assert "pending  slimgan" not in plan and "pending  native_w" not in plan  # (narrow D, ablations: never run)
    names = ["native_w0.5_seed4", "slimgan_bf16_seed6", "slimgan_seed9", "abl_alpha0_seed7", "slimgan_bf16_seed1"]
    assert study_module.Study.load("quick", tmp_path).seeds_named_in(names) == {"main": [4], "fast": [6]}


def test_seeds_auto_settings_are_checked(study_module, tmp_path, capsys):
    argv = ["--mode", "quick", "--runs-dir", str(tmp_path)]
    for extra, message in (
        (["--seeds", "auto"], "--seeds auto needs --max-seeds N, N >= 2"),
        (["--seeds", "auto", "--max-seeds", "1"], "(the most paired seeds of the arm), got 1"),
        (["--max-seeds", "4"], "--max-seeds and --arm go with --seeds auto"),
        (["--seeds", "auto", "--max-seeds", "4", "--report-only"], "give it without --report-only and --only"),
        (["--seeds", "3"], "argument --seeds: invalid choice: '3' (choose from "),
        (["--seeds", "auto", "--max-seeds", "4", "--arm", "x"], "argument --arm: invalid choice: 'x'"),
    ):
        with pytest.raises(SystemExit) as stop:
            study_module.main([*argv, *extra])
        assert stop.value.code == 2 and message in capsys.readouterr().err
