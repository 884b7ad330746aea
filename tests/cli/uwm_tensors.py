#!/usr/bin/env python3
"""Compares the training state of two unwedge model files (.uwm) byte for byte.

usage: uwm_tensors.py A.uwm B.uwm

A .uwm is a torch::serialize archive (a zip): `data.pkl` (a pickle) names every value, and
each tensor's storage is one `data/N` entry. This reads the pickle with the standard library
(no torch: classes become placeholders, tensors become their storage key), and compares, by
name: every network tensor (`method_state/...`), every optimizer moment and step count, and the
optimizer's options. LibTorch keys the optimizer state by the parameter's address in memory,
which differs between processes, so those keys are replaced by the parameter's position in the
optimizer's parameter list. Not compared: `info` (wall-clock seconds and the loss history,
which a resumed run records differently). Prints what was compared; exit 0 when all of it is
bitwise equal, 1 otherwise.
"""
import io
import pickle
import re
import sys
import zipfile


class _Placeholder:
    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: (
                "tensor", storage[2], offset, tuple(size), tuple(stride))
        return type(name, (_Placeholder,), {})

    def persistent_load(self, pid):
        return pid


def _leaves(x, path, out):
    if isinstance(x, tuple) and x and x[0] == "tensor":
        out[path] = x
    elif isinstance(x, dict):
        for k, v in x.items():
            _leaves(v, f"{path}/{k}", out)
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            _leaves(v, f"{path}/{i}", out)
    elif hasattr(x, "state"):
        _leaves(x.state, path, out)
    elif hasattr(x, "args"):
        _leaves(x.args, path, out)
    else:
        out[path] = x


def load(path):
    """{name: bytes of a tensor's storage (with its shape) or a plain value}."""
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        root = pkl[: -len("data.pkl")]
        leaves = {}
        _leaves(_Unpickler(io.BytesIO(z.read(pkl))).load(), "", leaves)
        # Parameter addresses -> their position in each optimizer's parameter list.
        index = {}
        for name, v in leaves.items():
            m = re.match(r"(.*)/param_groups/param_groups/(\d+)/params/(\d+)$", name)
            if m and isinstance(v, str):
                index[(m.group(1), v)] = f"param{m.group(2)}.{m.group(3)}"
        out = {}
        for name, v in leaves.items():
            if name == "/info" or re.search(r"/params/\d+$", name):
                continue
            m = re.match(r"(.*)/state/(0x[0-9a-f]+)/(.*)$", name)
            if m:
                name = f"{m.group(1)}/state/{index.get((m.group(1), m.group(2)), '?')}/{m.group(3)}"
            if isinstance(v, tuple) and v and v[0] == "tensor":
                v = (v[2], v[3], v[4], z.read(f"{root}data/{v[1]}"))
            out[name] = v
        return out


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    tensors = [k for k, v in a.items() if isinstance(v, tuple)]
    if not tensors:
        print(f"{sys.argv[1]}: no tensors")
        return 1
    if sorted(a) != sorted(b):
        print("different names:", sorted(set(a) ^ set(b))[:5])
        return 1
    differ = [k for k in sorted(a) if a[k] != b[k]]
    if differ:
        print(f"{len(differ)} of {len(a)} values differ, first {differ[0]}")
        return 1
    nbytes = sum(len(a[k][3]) for k in tensors)
    print(f"{len(tensors)} tensors ({nbytes} bytes) and {len(a) - len(tensors)} other values: equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
