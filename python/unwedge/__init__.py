"""unwedge: restore cryo-electron tomograms without ground truth.

Volumes are numpy float32 arrays shaped [Z, Y, X] (MRC order: X fastest). Every call runs the
same jobs as the `unwedge` program (train, restore, sample), so a Python call and the matching
command give the same numbers. Errors are Python exceptions with unwedge's one-line messages
(FileExistsError, OSError, ValueError). See docs/python.md.

    import unwedge
    sim = unwedge.simulate("tiny", seed=1)
    model = unwedge.train("n2n", even=sim["even"], odd=sim["odd"], steps=200,
                          options={"base_channels": 8})
    restored = model.restore(even=sim["even"], odd=sim["odd"])
    print(unwedge.evaluate(restored, sim["gt"])["metrics"]["cc"])
"""
from ._unwedge import (Model, evaluate, methods, read_mrc, set_log_level, set_threads, simulate,
                       train, write_mrc)

__all__ = ["Model", "evaluate", "methods", "read_mrc", "set_log_level", "set_threads",
           "simulate", "train", "write_mrc"]
