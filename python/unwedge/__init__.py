"""unwedge: restore cryo-electron tomograms without ground truth.

Volumes are numpy float32 arrays shaped [Z, Y, X] (MRC order: X fastest), or torch tensors
where the importable torch is the one unwedge was built against (Debian's python3-torch with its
libtorch-dev: see torch_support()); given tensors, the calls return tensors on the input's
device. Every call runs the same jobs as the `unwedge` program (train, restore, sample), so a
Python call and the matching command give the same numbers. Errors are Python exceptions with
unwedge's one-line messages (FileExistsError, OSError, ValueError). See docs/python.md.

    import unwedge
    sim = unwedge.simulate("tiny", seed=1)
    model = unwedge.train("n2n", even=sim["even"], odd=sim["odd"], steps=200,
                          options={"base_channels": 8})
    restored = model.restore(even=sim["even"], odd=sim["odd"])
    print(unwedge.evaluate(restored, sim["gt"])["metrics"]["cc"])
"""
from . import _unwedge
from ._unwedge import Model, methods, set_log_level, set_threads, simulate

__all__ = ["Model", "evaluate", "methods", "read_mrc", "set_log_level", "set_threads",
           "simulate", "torch_support", "train", "write_mrc"]


# --- torch tensors: a thin bridge through numpy ------------------------------------------------
# A CPU float32 contiguous tensor and its numpy view share memory (tensor.numpy(),
# torch.from_numpy), so the bridge copies nothing there; other tensors (another dtype, a GPU)
# are converted to CPU float32 first, and results go back to the first tensor's device.

def torch_support():
    """(True, "") when torch tensors are accepted, else (False, why): torch must import and its
    major.minor version must equal that of the LibTorch unwedge was built against."""
    try:
        import torch
    except ImportError:
        return False, ("torch is not installed (Debian: apt install python3-torch, the package "
                       "matching libtorch-dev " + _unwedge.libtorch_version + ")")
    have = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    if have != _unwedge.libtorch_version:
        return False, ("torch " + torch.__version__ + " is not the LibTorch " +
                       _unwedge.libtorch_version + " unwedge was built against")
    return True, ""


def _is_tensor(x):
    t = type(x)
    return t.__module__.startswith("torch") and t.__name__ in ("Tensor", "Parameter")


class _Bridge:
    """Converts tensor arguments to numpy and, when any was a tensor, results back."""

    def __init__(self):
        self.device = None
        self.torch = None

    def arg(self, x):
        if isinstance(x, (list, tuple)):
            return type(x)(self.arg(v) for v in x)
        if not _is_tensor(x):
            return x
        if self.torch is None:
            ok, why = torch_support()
            if not ok:
                raise TypeError("unwedge: a torch tensor was given but " + why +
                                "; pass a numpy array (tensor.numpy()) instead")
            import torch
            self.torch = torch
            self.device = x.device
        return x.detach().to(device="cpu", dtype=self.torch.float32).contiguous().numpy()

    def result(self, r):
        if self.torch is None:
            return r
        if isinstance(r, dict):
            return {k: self.result(v) for k, v in r.items()}
        if type(r).__module__ == "numpy" and type(r).__name__ == "ndarray":
            return self.torch.from_numpy(r).to(self.device)
        return r


def read_mrc(path, permissive=False, tensor=False):
    """Reads an MRC file: (data float32 [Z, Y, X], header dict); tensor=True gives the data as
    a CPU torch tensor (sharing the array's memory)."""
    data, header = _unwedge.read_mrc(path, permissive=permissive)
    if tensor:
        ok, why = torch_support()
        if not ok:
            raise TypeError("unwedge.read_mrc(tensor=True): " + why)
        import torch
        data = torch.from_numpy(data)
    return data, header


def write_mrc(path, data, voxel_size=None, header=None, mode=2, overwrite=False,
              label="unwedge python"):
    """Writes data [Z, Y, X] (array or tensor) as MRC2014 (mode 2 or 12), atomically; header:
    a dict as read_mrc returns (voxel_size, origin, nstart, labels)."""
    return _unwedge.write_mrc(path, _Bridge().arg(data), voxel_size=voxel_size, header=header,
                              mode=mode, overwrite=overwrite, label=label)


def evaluate(restored, truth, tilt_range=None, wedge_sign=1, voxel_size=1.0):
    """Metrics of a restoration against a ground truth (dict as `unwedge eval --json`);
    arrays or tensors."""
    b = _Bridge()
    return _unwedge.evaluate(b.arg(restored), b.arg(truth), tilt_range=tilt_range,
                             wedge_sign=wedge_sign, voxel_size=voxel_size)


def train(method, **kwargs):
    """Trains a method on halves (even=, odd=: arrays, tensors or paths, one or a list),
    tomograms (volumes=) or a RELION 5 table (star=); returns the Model. See
    help(unwedge._unwedge.train) for every option."""
    b = _Bridge()
    for k in ("even", "odd", "volumes"):
        if k in kwargs:
            kwargs[k] = b.arg(kwargs[k])
    return _unwedge.train(method, **kwargs)


train.__doc__ += "\n\n" + (_unwedge.train.__doc__ or "")

_model_restore = Model.restore
_model_sample = Model.sample


def _restore(self, volume=None, **kwargs):
    b = _Bridge()
    volume = b.arg(volume)
    for k in ("even", "odd"):
        if k in kwargs:
            kwargs[k] = b.arg(kwargs[k])
    return b.result(_model_restore(self, volume, **kwargs))


def _sample(self, volume=None, **kwargs):
    b = _Bridge()
    volume = b.arg(volume)
    for k in ("even", "odd"):
        if k in kwargs:
            kwargs[k] = b.arg(kwargs[k])
    return b.result(_model_sample(self, volume, **kwargs))


_restore.__doc__ = (_model_restore.__doc__ or "") + "\n(Arrays or torch tensors; given tensors, returns a tensor.)"
_sample.__doc__ = (_model_sample.__doc__ or "") + "\n(Arrays or torch tensors; given tensors, the arrays come back as tensors.)"
Model.restore = _restore
Model.sample = _sample
