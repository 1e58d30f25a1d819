"""The cost profile command and the numbered scripts' command lines (run as a user would, in subprocesses)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.networks import EfficientZeroNet, teacher_config
from common.profile import count_macs

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ["params_total", "params_acting", "macs_initial", "macs_recurrent", "macs_decision",
          "latency_ms_decision_cpu", "checkpoint_mb"]


def run(*args, check=True):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=check, timeout=600)


def test_mac_counter_on_known_layers():
    lin = torch.nn.Linear(100, 7)
    assert count_macs(lambda: lin(torch.zeros(3, 100))) == 3 * 100 * 7
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
    assert count_macs(lambda: conv(torch.zeros(1, 4, 5, 5))) == 8 * 4 * 9 * 25
    dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    assert count_macs(lambda: dw(torch.zeros(1, 8, 5, 5))) == 8 * 9 * 25


def test_teacher_macs_match_spec():
    # docs/algorithm.md, 'Parameter counts and multiply-adds': representation ~148.6 M, dynamics + prediction
    # ~9.1 M, 50-simulation decision ~0.61 G
    net = EfficientZeroNet(teacher_config((12, 96, 96), 18)).eval()
    with torch.no_grad():
        rep = count_macs(lambda: net.representation(torch.zeros(1, 12, 96, 96)))
        out = net.initial_inference(torch.zeros(1, 12, 96, 96))
        rec = count_macs(lambda: net.recurrent_inference(out.latent, net.initial_lstm_state(1), torch.zeros(1).long()))
    assert rep == pytest.approx(148.6e6, rel=0.005)
    assert rec == pytest.approx(9.1e6, rel=0.01)


def test_profile_command_writes_every_field(tmp_path):
    out = tmp_path / "profile.json"
    proc = run("-m", "common.profile", "--num-actions", "18", "--repeats", "3", "--json-out", str(out))
    assert "student/teacher" in proc.stdout
    result = json.loads(out.read_text())
    assert set(result) == {"teacher", "student"}
    for model in result.values():
        for f in FIELDS:
            assert model[f] > 0, f
        assert model["macs_decision"] == model["macs_initial"] + 50 * model["macs_recurrent"]
    t, s = result["teacher"], result["student"]
    assert t["params_total"] == 8_350_708 and t["params_acting"] == 2_833_908
    assert t["macs_decision"] == pytest.approx(0.61e9, rel=0.02)
    assert s["macs_decision"] < t["macs_decision"] and s["checkpoint_mb"] < t["checkpoint_mb"]
    assert t["checkpoint_mb"] == pytest.approx(8_350_708 * 4 / 2**20, rel=0.01)  # float32 weights + BN stats


def test_profile_minatar_scale(tmp_path):
    out = tmp_path / "p.json"
    run("-m", "common.profile", "--scale", "minatar", "--num-actions", "3", "--repeats", "2", "--json-out", str(out))
    result = json.loads(out.read_text())
    assert result["teacher"]["config"]["obs_shape"] == [16, 10, 10]
    assert result["student"]["params_acting"] < result["teacher"]["params_acting"]


@pytest.mark.parametrize("script", ["01_pretrain_teacher.py", "02_distill_student.py", "03_evaluate.py"])
def test_scripts_parse_help_and_say_what_they_do(script):
    proc = run(script, "--help")
    assert "usage:" in proc.stdout and "Stage" in proc.stdout


def test_unknown_game_fails_fast_with_valid_names():
    proc = run("01_pretrain_teacher.py", "--env-id", "Breakot", check=False)
    assert proc.returncode != 0
    assert "unknown game 'Breakot'" in proc.stderr and "Breakout" in proc.stderr


# Flags whose feature exists only on CUDA: tests/test_pipeline.py checks it at the function level (autocast and the
# captured search step, skipped without a GPU); on the CPU the flag changes nothing.
CUDA_ONLY = {"amp", "cuda_graphs"}


def test_every_flag_is_named_by_a_test_beyond_the_bad_input_one():
    """A guard for new flags: each field of a script's Args (and of the shared TrainArgs) appears in some test other
    than tests/test_usage.py, whose generated command lines only check that bad values are refused. Appearing is not
    proof of a test that fails when the feature breaks; each flag's test says what it checks."""
    import ast

    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("*.py") if p.name != "test_usage.py")
    tests += (ROOT / "common" / "presets.py").read_text()  # the learning and sweep tests run the presets' flags
    from common.distill import WEIGHT_FLAGS

    tests += " ".join(f'"{v}"' for v in WEIGHT_FLAGS.values())  # tests/test_distill.py checks them through this map
    missing = []
    for path in [*sorted(ROOT.glob("0*.py")), ROOT / "common" / "args.py"]:
        for cls in ast.walk(ast.parse(path.read_text())):
            if isinstance(cls, ast.ClassDef) and cls.name.endswith("Args"):
                for name in (n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)):
                    flag = "--" + name.replace("_", "-")
                    named = any(s in tests for s in (flag, f"--no-{flag[2:]}", f"{name}=", f".{name}", f'"{name}"'))
                    if not named and name not in CUDA_ONLY:
                        missing.append(f"{path.name}: {flag}")
    assert not missing, f"flags no test names: {missing}"
