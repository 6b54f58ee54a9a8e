"""experiments/benchmarks/universal_vs_fixed.py (issue 17): its noise rule, targets and the summary over
training seeds, on known inputs (the evaluations themselves are slimgan_pl.evaluate's, tested elsewhere)."""

from __future__ import annotations

import json

import pytest

from helpers.scripts import load_script

MACS = {0.25: 1e5, 0.5: 4e5, 0.75: 9e5, 1.0: 16e5}


@pytest.fixture(scope="module")
def bench():
    return load_script("experiments/benchmarks/universal_vs_fixed.py")


def run(fids: dict[float, list[float]], first_iteration: int = 1000) -> list[dict]:
    """One model's evaluations at len(values) checkpoints: width -> FMNIST-FID at each checkpoint."""
    n = len(next(iter(fids.values())))
    return [
        {
            "iteration": first_iteration + 250 * k,
            "widths": [{"width": w, "macs": MACS[w], "fmnist_fid": v[k]} for w, v in fids.items()],
            "consistency": {},
        }
        for k in range(n)
    ]


def payload(universal: dict[float, list[float]], fixed: dict[float, list[float]]) -> dict:
    return {"runs": {"n_fake": 100, "universal": run(universal), "fixed": run(fixed)}}


def test_one_seed_step_noise_is_twice_the_spread_of_the_step(bench):
    # 0.25 -> 0.5 rises by 1, 2, 3 over the checkpoints: sd 1, tolerance 2, last rise 3 beyond it;
    # 0.5 -> 0.75 by -1 at every checkpoint (sd 0): a fall is never a rise
    universal = {0.25: [10.0, 10.0, 10.0], 0.5: [11.0, 12.0, 13.0], 0.75: [10.0, 11.0, 12.0]}
    fixed = {0.25: [10.0, 10.0, 10.0], 0.5: [12.0, 12.0, 12.0], 0.75: [12.0, 12.0, 12.0]}
    summary = bench.summarise(run(universal), run(fixed), noise=0.05)
    first, second = summary["steps_universal"]
    assert (first["rise"], first["tolerance"], first["beyond_noise"]) == (3.0, 2.0, True)
    assert first["mean_rise"] == 2.0 and first["persistent"]  # 2 > 2 * 1 / sqrt(3)
    assert (second["rise"], second["beyond_noise"], second["persistent"]) == (-1.0, False, False)
    assert not summary["monotone_within_noise"]
    ratios = {a["width"]: round(a["ratio"], 4) for a in summary["anchors"]}
    assert ratios == {0.25: 1.0, 0.5: round(13 / 12, 4), 0.75: 1.0}
    assert summary["no_worse_than_10pct_at_all_anchors"]  # 13/12 = 1.083


def test_one_seed_anchor_target_fails_above_ten_percent(bench):
    summary = bench.summarise(run({0.25: [11.2], 0.5: [9.0]}), run({0.25: [10.0], 0.5: [10.0]}), noise=0.05)
    assert not summary["no_worse_than_10pct_at_all_anchors"]  # 1.12 at 0.25
    assert not summary["noise_measured"] and summary["steps_universal"][0]["tolerance"] == pytest.approx(0.56)


def test_seed_steps_pool_every_seed_and_checkpoint(bench):
    a = bench.curve(run({0.25: [10.0, 10.0, 10.0], 0.5: [11.0, 12.0, 13.0]}))  # rises 1, 2, 3
    b = bench.curve(run({0.25: [10.0, 10.0, 10.0], 0.5: [12.0, 12.0, 12.0]}))  # rises 2, 2, 2
    (step,) = bench.seed_steps([a, b])
    sd = (2 / 5) ** 0.5  # the six rises 1 2 3 2 2 2 around their mean 2
    assert step["rise"] == 2.5 and step["final_rise_per_seed"] == [3.0, 2.0]
    assert step["tolerance"] == pytest.approx(2 * sd / 2**0.5, abs=1e-3)
    assert step["beyond_noise"] and step["persistent"] and step["mean_rise_per_seed"] == [2.0, 2.0]
    # a seed that falls where the other rises: the seed-mean rise is within the pooled noise
    c = bench.curve(run({0.25: [10.0, 10.0, 10.0], 0.5: [8.0, 8.0, 8.0]}))
    (mixed,) = bench.seed_steps([a, c])
    assert mixed["rise"] == 0.5 and not mixed["beyond_noise"] and not mixed["persistent"]


def test_seed_steps_persistent_needs_a_rise_at_every_seed(bench):
    rising = bench.curve(run({0.25: [10.0, 10.0, 10.0], 0.5: [12.0, 12.0, 12.0]}))  # +2 at every checkpoint
    falling = bench.curve(run({0.25: [10.0, 10.0, 10.0], 0.5: [9.9, 9.9, 9.9]}))  # -0.1
    (step,) = bench.seed_steps([rising, rising, falling])
    # mean rise 1.3 is above its tolerance (2 * sd / sqrt(3), about 1.21), but one seed falls
    assert step["mean_rise"] == 1.3 and step["mean_rise"] > step["tolerance"]
    assert step["mean_rise_per_seed"] == [2.0, 2.0, -0.1] and not step["persistent"]


def test_combine_seeds_averages_finals_and_checks_targets_per_seed(bench):
    seed0 = payload({0.25: [20.0, 12.0], 0.5: [20.0, 10.0]}, {0.25: [11.0, 11.0], 0.5: [10.0, 10.0]})
    seed1 = payload({0.25: [20.0, 10.0], 0.5: [20.0, 9.0]}, {0.25: [9.0, 9.0], 0.5: [10.0, 10.0]})
    summary = bench.combine_seeds([seed0, seed1], ["s0", "s1"])
    u = {r["width"]: r for r in summary["curve_universal"]}
    assert u[0.25]["final_per_seed"] == [12.0, 10.0] and u[0.25]["final"] == 11.0
    assert u[0.25]["mean"] == (16.0 + 15.0) / 2  # means over checkpoints, averaged over seeds
    anchors = {a["width"]: a for a in summary["anchors"]}
    assert anchors[0.25]["ratio"] == 1.1 and anchors[0.25]["ratio_per_seed"] == [12 / 11, 10 / 9]
    assert summary["no_worse_than_10pct_at_all_anchors"]  # 1.1 and 0.95 on the seed means
    assert not summary["no_worse_than_10pct_at_all_anchors_every_seed"]  # seed 1: 10 / 9 = 1.11
    assert not summary["no_worse_than_10pct_at_all_anchors_means"]  # checkpoint means: 15.5 / 10
    assert summary["checkpoints"] == {"universal": [1000, 1250], "fixed": [1000, 1250]} and summary["n_fake"] == 100
    # paired by seed: +1 at both seeds at 0.25x, exactly the margin (10% of 10): not below it, undecided,
    # and no number of seeds decides a mean that sits on the margin with no spread
    assert anchors[0.25]["diff_per_seed"] == [1.0, 1.0] and anchors[0.25]["interval"] == [1.0, 1.0]
    assert anchors[0.25]["margin"] == pytest.approx(1.0) and anchors[0.25]["verdict"] == "undecided"
    assert anchors[0.25]["seeds_to_decide"] is None and anchors[0.25]["to_decide"] == "not decidable at this spread"
    # 0.5x: 0 and -1, paired t with 1 degree of freedom: -0.5 ± 12.706 * 0.7071 / sqrt(2) = -0.5 ± 6.353,
    # straddling the margin of 1.0: undecided (a percentile bootstrap said "held" from [-1, 0])
    low, high = anchors[0.5]["interval"]
    assert low == pytest.approx(-6.853, abs=1e-3) and high == pytest.approx(5.853, abs=1e-3)
    assert anchors[0.5]["n"] == 2 and anchors[0.5]["method"] == "paired t" and summary["verdicts"][0.5] == "undecided"
    assert anchors[0.5]["p_permutation"] == 1.0  # 2 seeds: the 4 sign flips give means +-0.5, +-0.5
    assert anchors[0.5]["seeds_to_decide"] > 2 and anchors[0.5]["to_decide"].endswith("seeds to decide")
    cells = f"| 0.5 | +0.00 / -1.00 | -0.50 | 1.00 | undecided: [{low:+.2f}, {high:+.2f}], paired t, n=2; ~"
    assert cells in bench.combined_markdown(summary, "")


def test_combine_refuses_one_seed_and_other_widths(bench):
    seed0 = payload({0.25: [10.0], 0.5: [9.0]}, {0.25: [10.0], 0.5: [9.0]})
    other = payload({0.25: [10.0], 0.75: [9.0]}, {0.25: [10.0], 0.5: [9.0]})
    with pytest.raises(ValueError, match="at least two seeds"):
        bench.combine_seeds([seed0], ["s0"])
    with pytest.raises(ValueError, match=r"s1: universal widths \[0.25, 0.75\] differ from s0's \[0.25, 0.5\]"):
        bench.combine_seeds([seed0, other], ["s0", "s1"])
    with pytest.raises(ValueError, match="s1: no 'fixed' evaluations"):
        bench.combine_seeds([seed0, {"runs": {"universal": seed0["runs"]["universal"]}}], ["s0", "s1"])
    with pytest.raises(ValueError, match="one label per seed: 3 results, 2 labels"):
        bench.combine_seeds([seed0, seed0, seed0], ["s0", "s1"])
    longer = payload({0.25: [10.0, 10.0], 0.5: [9.0, 9.0]}, {0.25: [10.0], 0.5: [9.0]})
    with pytest.raises(ValueError, match=r"s1: universal checkpoints \[1000, 1250\] differ from s0's \[1000\]"):
        bench.combine_seeds([seed0, longer], ["s0", "s1"])
    fewer_fakes = json.loads(json.dumps(seed0))
    fewer_fakes["runs"]["n_fake"] = 50
    with pytest.raises(ValueError, match="s1: evaluated with 50 fakes per width, s0 with 100"):
        bench.combine_seeds([seed0, fewer_fakes], ["s0", "s1"])
    unscored = json.loads(json.dumps(seed0))
    unscored["runs"]["fixed"][0]["widths"][1]["fmnist_fid"] = None
    with pytest.raises(ValueError, match=r"s1: runs.fixed\[0\] has a width without a numeric 'fmnist_fid'"):
        bench.combine_seeds([seed0, unscored], ["s0", "s1"])


def test_combine_reports_anchors_the_universal_model_was_not_evaluated_at(bench):
    seed = payload({0.25: [10.0], 0.75: [9.0]}, {0.25: [10.0], 0.5: [9.0], 0.75: [9.0]})
    summary = bench.combine_seeds([seed, seed], ["s0", "s1"])
    assert summary["anchors_not_evaluated"] == [0.5] and [a["width"] for a in summary["anchors"]] == [0.25, 0.75]
    assert not summary["no_worse_than_10pct_at_all_anchors"]  # every anchor present ratio is 1.0
    assert "not evaluated at: [0.5]" in bench.combined_markdown(summary, "")


def test_combine_command_writes_the_report_and_names_a_bad_file(bench, tmp_path, monkeypatch, capsys):
    files = []
    for seed, shift in ((0, 0.0), (1, 1.0)):
        path = tmp_path / f"seed{seed}.json"
        data = payload({w: [10.0 + shift, 9.0 + shift] for w in MACS}, {w: [10.0 + shift, 10.0 + shift] for w in MACS})
        path.write_text(json.dumps(data))
        files.append(str(path))
    out = tmp_path / "combined"
    argv = ["universal_vs_fixed.py", "--combine", *files, "--labels", "seed 0", "seed 1", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    bench.main()
    text = out.with_suffix(".md").read_text()
    assert (
        "2 training seeds" in text
        and "Seeds: `seed 0`, `seed 1`." in text
        and "| 0.25 | 0.10M | 9.00 / 10.00 | 9.50 |" in text
    )
    assert json.loads(out.with_suffix(".json").read_text())["summary"]["monotone_within_noise"]
    assert out.with_suffix(".png").stat().st_size > 0
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    unscored = tmp_path / "unscored.json"
    unscored.write_text(json.dumps(payload({0.25: [None]}, {0.25: [10.0]})))
    for argv, message in (
        (["--combine", files[0], str(bad)], f"--combine {bad}: cannot read it as JSON"),
        (["--combine", files[0], str(unscored)], f"--combine {unscored}: runs.universal[0] has a width without a"),
        (["--combine", *files, "--universal", "u.ckpt"], "give it without --universal"),
        (["--combine", *files, "--labels", "only one"], "--labels: give one per --combine file (2), got 1"),
        (["--combine", *files, "--n-fake", "50"], "--combine evaluates nothing: --n-fake would be ignored"),
    ):
        monkeypatch.setattr("sys.argv", ["universal_vs_fixed.py", *argv, "--out", str(tmp_path / "x")])
        with pytest.raises(SystemExit):
            bench.main()
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.md").exists()
