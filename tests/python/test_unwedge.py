"""The Python package against independent computations: mrcfile (python3-mrcfile) for the MRC
round trip, the `unwedge` program for restoration, and the checkpoint a Ctrl-C leaves.

Run by CTest (python_pytest) with PYTHONPATH=build/python and UNWEDGE_BIN=build/unwedge.
"""
import json
import os
import signal
import subprocess
import threading

import numpy as np
import pytest

import unwedge

mrcfile = pytest.importorskip("mrcfile")
BIN = os.environ.get("UNWEDGE_BIN", "unwedge")
# A tiny network and patch: seconds per run on one CPU thread.
TINY = {"depth": 1, "base_channels": 4, "convs_per_level": 1}

unwedge.set_threads(1)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "tiny"
    return unwedge.simulate("tiny", seed=3, out=str(out)), out


@pytest.fixture(scope="module")
def model(sim, tmp_path_factory):
    s, _ = sim
    path = tmp_path_factory.mktemp("model") / "n2n.uwm"
    return unwedge.train("n2n", even=s["even"], odd=s["odd"], options=TINY, patch=16, batch=2,
                         steps=3, out=str(path))


def test_mrc_round_trip_matches_mrcfile(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((5, 7, 9)).astype(np.float32)
    path = tmp_path / "a.mrc"
    unwedge.write_mrc(str(path), data, header={"voxel_size": (2.5, 2.5, 2.5),
                                               "origin": (10.0, 20.0, 30.0)})
    back, header = unwedge.read_mrc(str(path))
    assert back.dtype == np.float32 and back.shape == (5, 7, 9)
    np.testing.assert_array_equal(back, data)
    assert header["voxel_size"] == pytest.approx((2.5, 2.5, 2.5))
    assert header["origin"] == pytest.approx((10.0, 20.0, 30.0))
    # mrcfile, an independent reader, sees the same values, voxel size and origin.
    with mrcfile.open(str(path), permissive=False) as m:
        np.testing.assert_array_equal(m.data, data)
        assert float(m.voxel_size.x) == pytest.approx(2.5)
        assert float(m.header.origin.y) == pytest.approx(20.0)
    # And a file mrcfile wrote (mode 1, int16) reads as its values.
    ints = rng.integers(-300, 300, size=(4, 6, 8)).astype(np.int16)
    other = tmp_path / "b.mrc"
    with mrcfile.new(str(other)) as m:
        m.set_data(ints)
        m.voxel_size = 3.0
    back, header = unwedge.read_mrc(str(other))
    np.testing.assert_array_equal(back, ints.astype(np.float32))
    assert header["voxel_size"][0] == pytest.approx(3.0)


def test_simulate_returns_the_arrays_it_writes(sim):
    s, out = sim
    for name in ("gt", "tomo", "even", "odd"):
        with mrcfile.open(str(out / f"{name}.mrc")) as m:
            np.testing.assert_allclose(s[name], m.data, rtol=0, atol=1e-6)
    assert s["tomo"].shape == (32, 64, 64)
    assert s["tilt_range"] == pytest.approx((-60.0, 60.0))


def test_restore_on_an_array_equals_the_program(sim, model, tmp_path):
    _, out = sim
    tomo, _ = unwedge.read_mrc(str(out / "tomo.mrc"))
    mine = model.restore(tomo, tile=32, overlap=8)
    cli = tmp_path / "r.mrc"
    subprocess.run([BIN, "-q", "--threads", "1", "restore", "--model", model.path, "--in",
                    str(out / "tomo.mrc"), "--out", str(cli), "--tile", "32", "--overlap", "8",
                    "--no-progress"], check=True)
    with mrcfile.open(str(cli)) as m:
        theirs = np.array(m.data)
    assert mine.shape == theirs.shape
    assert np.max(np.abs(mine - theirs)) <= 1e-6 * max(1.0, float(np.max(np.abs(theirs))))
    # flips=1 (one pass instead of the default average over 4 flips), as `restore --flips 1`.
    one = model.restore(tomo, tile=32, overlap=8, flips=1)
    subprocess.run([BIN, "-q", "--threads", "1", "restore", "--model", model.path, "--in",
                    str(out / "tomo.mrc"), "--out", str(cli), "--tile", "32", "--overlap", "8",
                    "--flips", "1", "--overwrite", "--no-progress"], check=True)
    with mrcfile.open(str(cli)) as m:
        theirs1 = np.array(m.data)
    assert np.max(np.abs(one - theirs1)) <= 1e-6 * max(1.0, float(np.max(np.abs(theirs1))))
    # Halves: the mean of the restored halves, as `restore --even --odd`.
    pair = model.restore(even=str(out / "even.mrc"), odd=str(out / "odd.mrc"), tile=32, overlap=8)
    assert pair.shape == theirs.shape and np.isfinite(pair).all()


def test_evaluate_against_an_independent_correlation(sim):
    s, _ = sim
    result = unwedge.evaluate(s["tomo"], s["gt"])
    cc = np.corrcoef(s["tomo"].ravel().astype(np.float64), s["gt"].ravel().astype(np.float64))[0, 1]
    assert result["metrics"]["cc"] == pytest.approx(cc, abs=1e-6)


def test_errors_are_python_exceptions_with_the_one_line_message(tmp_path, sim):
    s, _ = sim
    messages = []
    missing = str(tmp_path / "missing.mrc")
    with pytest.raises(OSError, match="missing.mrc") as e:
        unwedge.read_mrc(missing)
    messages.append(str(e.value))
    path = tmp_path / "x.mrc"
    unwedge.write_mrc(str(path), np.zeros((2, 3, 4), np.float32))
    with pytest.raises(FileExistsError, match="x.mrc") as e:
        unwedge.write_mrc(str(path), np.zeros((2, 3, 4), np.float32))
    messages.append(str(e.value))
    with pytest.raises(ValueError, match="expected a 3D array") as e:
        unwedge.write_mrc(str(tmp_path / "y.mrc"), np.zeros((3, 4), np.float32))
    messages.append(str(e.value))
    with pytest.raises(ValueError, match="nosuch") as e:
        unwedge.train("nosuch", even=s["even"], odd=s["odd"], steps=1)
    messages.append(str(e.value))
    with pytest.raises(ValueError, match="larger than the volume") as e:
        unwedge.train("n2n", even=s["even"], odd=s["odd"], patch=128, steps=1, options=TINY)
    messages.append(str(e.value))
    (tmp_path / "bad.uwm").write_bytes(b"not a model")
    with pytest.raises((ValueError, OSError), match="bad.uwm") as e:
        unwedge.Model.load(str(tmp_path / "bad.uwm"))
    messages.append(str(e.value))
    # The same one line the program prints: no line breaks.
    for message in messages:
        assert message and "\n" not in message, message


def test_ctrl_c_in_progress_callback_leaves_a_checkpoint_that_resumes(sim, tmp_path):
    s, _ = sim
    out = str(tmp_path / "i.uwm")
    seen = []

    def progress(report):
        seen.append(report["done"])
        if report["done"] >= 10:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C: KeyboardInterrupt in this callback

    with pytest.raises(KeyboardInterrupt):
        unwedge.train("n2n", even=s["even"], odd=s["odd"], options=TINY, patch=16, batch=2,
                      steps=40, out=out, progress=progress)
    stopped = unwedge.Model.load(out)
    assert 10 <= stopped.step < 40  # stopped at a step boundary, checkpoint written
    resumed = unwedge.train("n2n", even=s["even"], odd=s["odd"], options=TINY, patch=16,
                            batch=2, steps=40, out=out, resume=True)
    assert resumed.step == 40


def test_ctrl_c_while_training_runs_stops_at_a_step(sim, tmp_path):
    s, _ = sim
    out = str(tmp_path / "t.uwm")
    started = threading.Event()

    def progress(report):
        started.set()

    def interrupt():
        started.wait(60)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        unwedge.train("n2n", even=s["even"], odd=s["odd"], options=TINY, patch=16, batch=2,
                      steps=100000, out=out, progress=progress)
    t.join()
    step = unwedge.Model.load(out).step
    assert 10 <= step < 100000


def test_sample_equals_the_program(sim, tmp_path):
    s, out = sim
    mc = unwedge.train("cryowgen-mc", even=s["even"], odd=s["odd"], options=TINY, patch=24,
                       batch=2, steps=2, out=str(tmp_path / "mc.uwm"))
    post = mc.sample(even=str(out / "even.mrc"), odd=str(out / "odd.mrc"), n=2, seed=4, tile=32,
                     overlap=8, std_pool=0.8)
    subprocess.run([BIN, "-q", "--threads", "1", "sample", "--model", mc.path, "--even",
                    str(out / "even.mrc"), "--odd", str(out / "odd.mrc"), "--out-dir",
                    str(tmp_path / "post"), "--n", "2", "--seed", "4", "--tile", "32", "--overlap", "8",
                    "--std-pool", "0.8", "--no-report", "--no-progress"], check=True)
    for name in ("mean", "std"):
        with mrcfile.open(str(tmp_path / "post" / f"{name}.mrc")) as m:
            theirs = np.array(m.data)
        assert post[name].shape == theirs.shape
        assert np.max(np.abs(post[name] - theirs)) <= 1e-6 * max(1.0, float(np.abs(theirs).max()))
    assert post["summary"]["ess_min"] > 0


def test_sample_bootstrap_calibrated_equals_the_program(sim, model, tmp_path):
    s, out = sim
    post = model.sample(str(out / "tomo.mrc"), n=3, seed=2, tile=24, overlap=4, uq="bootstrap",
                      calibrate=True, calibrate_cubes=2)
    subprocess.run([BIN, "-q", "--threads", "1", "sample", "--model", model.path, "--in",
                    str(out / "tomo.mrc"), "--out-dir", str(tmp_path / "boot"), "--n", "3",
                    "--seed", "2", "--tile", "24", "--overlap", "4", "--uq", "bootstrap",
                    "--calibrate", "--calibrate-cubes", "2", "--no-report", "--no-progress"],
                   check=True)
    for name in ("mean", "std", "upper"):
        with mrcfile.open(str(tmp_path / "boot" / f"{name}.mrc")) as m:
            theirs = np.array(m.data)
        assert np.max(np.abs(post[name] - theirs)) <= 1e-6 * max(1.0, float(np.abs(theirs).max()))
    c = post["summary"]["calibration"]
    assert c["bounds_scale"] > 0 and c["coverage_after"] >= c["interval"]
    assert c["std_scale"] > 0 and len(c["reliability"]["after"]) == 4
    assert c["level_z"]["nominal"] == [0.5, 0.8, 0.9, 0.95] and all(z > 0 for z in c["level_z"]["z"])
    assert c["cubes"] == 2 and len(c["rotation"].split(", ")) == 2
    with pytest.raises(ValueError, match="deterministic"):
        model.sample(str(out / "tomo.mrc"), n=2)


def _same(a, b):
    """Equal nested results, NaN equal to NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_wedge_sign_choices_in_evaluate(sim):
    s, _ = sim
    # Symmetric range (the simulation's -60..60): every sign gives the same metrics.
    a = unwedge.evaluate(s["tomo"], s["gt"], tilt_range=(-60, 60), wedge_sign=1)
    b = unwedge.evaluate(s["tomo"], s["gt"], tilt_range=(-60, 60), wedge_sign="auto")
    c = unwedge.evaluate(s["tomo"], s["gt"], tilt_range=(-60, 60), wedge_sign=True)
    assert b["wedge_sign_flip"] is False and c["wedge_sign_flip"] is True
    assert _same(a["metrics"], b["metrics"]) and _same(a["metrics"], c["metrics"])
    with pytest.raises(ValueError, match="wedge_sign: 'up' is not 'auto', \\+1 or -1"):
        unwedge.evaluate(s["tomo"], s["gt"], tilt_range=(-50, 65), wedge_sign="up")


# --- torch tensors (Debian's python3-torch, the package matching libtorch-dev) -----------------

def _torch():
    ok, why = unwedge.torch_support()
    if not ok:
        pytest.skip(why)
    import torch
    return torch


def test_torch_tensors_give_the_numpy_paths_values(sim, model, tmp_path):
    torch = _torch()
    s, out = sim
    # read_mrc / write_mrc
    data, _ = unwedge.read_mrc(str(out / "tomo.mrc"))
    t, header = unwedge.read_mrc(str(out / "tomo.mrc"), tensor=True)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), data)
    unwedge.write_mrc(str(tmp_path / "t.mrc"), t * 2, header=header)
    back, _ = unwedge.read_mrc(str(tmp_path / "t.mrc"))
    np.testing.assert_array_equal(back, data * 2)
    # restore: one volume and a pair of halves; a tensor back, equal to the array path's values
    r_np = model.restore(data, tile=32, overlap=8)
    r_t = model.restore(t, tile=32, overlap=8)
    assert isinstance(r_t, torch.Tensor) and r_t.shape == (32, 64, 64)
    np.testing.assert_array_equal(r_t.numpy(), r_np)
    even, odd = torch.from_numpy(s["even"]), torch.from_numpy(s["odd"])
    h_np = model.restore(even=s["even"], odd=s["odd"], tile=32, overlap=8)
    h_t = model.restore(even=even, odd=odd.double(), tile=32, overlap=8)  # any float dtype
    np.testing.assert_array_equal(h_t.numpy(), h_np)
    # evaluate
    e_np = unwedge.evaluate(r_np, s["gt"])
    e_t = unwedge.evaluate(r_t, torch.from_numpy(s["gt"]))
    assert _same(e_t["metrics"], e_np["metrics"])
    # train on tensors: the same model as on arrays (same seed, same steps)
    m_t = unwedge.train("n2n", even=even, odd=odd, options=TINY, patch=16, batch=2, steps=2,
                        out=str(tmp_path / "mt.uwm"))
    m_np = unwedge.train("n2n", even=s["even"], odd=s["odd"], options=TINY, patch=16, batch=2,
                         steps=2, out=str(tmp_path / "mn.uwm"))
    np.testing.assert_array_equal(m_t.restore(t, tile=32, overlap=8).numpy(),
                                  m_np.restore(data, tile=32, overlap=8))


def test_torch_tensors_in_sample(sim, tmp_path):
    torch = _torch()
    s, _ = sim
    mc = unwedge.train("cryowgen-mc", even=s["even"], odd=s["odd"], options=TINY, patch=24,
                       batch=2, steps=2, out=str(tmp_path / "mc.uwm"))
    a = mc.sample(even=s["even"], odd=s["odd"], n=2, seed=4, tile=32, overlap=8)
    b = mc.sample(even=torch.from_numpy(s["even"]), odd=torch.from_numpy(s["odd"]), n=2, seed=4,
                  tile=32, overlap=8)
    for name in ("mean", "std"):
        assert isinstance(b[name], torch.Tensor)
        np.testing.assert_array_equal(b[name].numpy(), a[name])


def test_a_torch_that_does_not_match_is_refused_with_the_reason(sim, monkeypatch):
    torch = _torch()
    s, _ = sim
    monkeypatch.setattr(unwedge._unwedge, "libtorch_version", "0.1")
    ok, why = unwedge.torch_support()
    assert not ok and "is not the LibTorch 0.1 unwedge was built against" in why
    with pytest.raises(TypeError, match="a torch tensor was given but torch .* is not the "
                                        "LibTorch 0.1"):
        unwedge.evaluate(torch.from_numpy(s["tomo"]), s["gt"])
    # numpy arrays are unaffected
    assert "metrics" in unwedge.evaluate(s["tomo"], s["gt"])


def test_cryogen_ot_on_one_volume_gets_its_one_tomogram_options(sim):
    # volumes= (one tomogram, no halves): the Trainer applies cryogen-ot's one-tomogram options,
    # as `unwedge train --in`; an option given explicitly wins; a halves-only method refuses.
    s, _ = sim
    kw = dict(patch=16, batch=2, steps=2, tilt_range=s["tilt_range"])
    m = unwedge.train("cryogen-ot", volumes=s["tomo"], options=TINY, **kw)
    opts = m.info["train_options"]["method_options"]
    assert opts["input"] == "one" and opts["target"] == "data"
    assert opts["lowpass_skip"] == 0 and opts["prior_share"] == 0
    assert opts["detach"] is True and opts["symmetric"] is False
    r = m.restore(s["tomo"], tile=32, overlap=8)
    assert r.shape == s["tomo"].shape and np.isfinite(r).all()
    m2 = unwedge.train("cryogen-ot", volumes=s["tomo"], options={**TINY, "symmetric": True}, **kw)
    assert m2.info["train_options"]["method_options"]["symmetric"] is True
    with pytest.raises(ValueError, match="half tomograms"):
        unwedge.train("cryogen-map", volumes=s["tomo"], options=TINY, **kw)
