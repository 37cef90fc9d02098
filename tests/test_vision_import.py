"""torchvision imported without TorchDynamo (:mod:`wsol.models.vision`), and models built from a checkpoint on the
meta device without it: checked in fresh processes by what ``sys.modules`` holds, not by timing."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
import torchvision
from conftest import REPO

from wsol.models import _SkipMetaNormal

IMPORT = """
import json, sys
import torch
before = "torch._dynamo" in sys.modules  # a torch that imports TorchDynamo itself leaves nothing to check
from wsol.models.vision import import_torchvision
tv = import_torchvision()
after = {name: name in sys.modules for name in ("torch._dynamo", "torch._dynamo.utils", "sympy")}
forwarder = sys.modules["torchvision.ops.roi_align"].is_compile_supported
boxes = tv.ops.roi_align(torch.arange(64.0).view(1, 1, 8, 8), [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], 2).flatten()
import torch._dynamo.utils as real
print(json.dumps({
    "before": before, "after": after, "boxes": boxes.tolist(),
    "real_registered": sys.modules["torch._dynamo.utils"] is real and torch._dynamo.utils is real,
    "forwarded": [forwarder(d) == real.is_compile_supported(d) for d in ("cpu", "meta")],
    "forwarder_is_wsol": forwarder.__module__ == "wsol.models.vision",
}))
"""

FALLBACK = """
import json, sys
import torch
from wsol.models import vision
stand_in = vision._stand_in()
sys.modules[vision.DYNAMO_UTILS] = stand_in
probed = hasattr(stand_in, "__path__"), "torch._dynamo" in sys.modules  # the import system's probe imports nothing
counters = stand_in.counters  # any other name: from the real module, which replaces the stand-in
import torch._dynamo.utils as real
print(json.dumps({"probed": probed, "same": counters is real.counters, "replaced": real is not stand_in}))
"""

BUILD = """
import json, sys
import torch
from wsol.models import build_model
if sys.argv[1] == "efficientnet_lite0":
    model, state = build_model("efficientnet_lite0"), {}
else:
    model = build_model("resnet18", checkpoint=sys.argv[1], num_classes=10)
    state = torch.load(sys.argv[1])
print(json.dumps({"dynamo": "torch._dynamo" in sys.modules, "torchvision": "torchvision" in sys.modules,
                  "equal": all(torch.equal(v, state[k]) for k, v in model.module.state_dict().items()) if state
                           else None}))
"""


def _run(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_torchvision_is_imported_without_torchdynamo_and_roi_align_still_works():
    out = _run(IMPORT)
    if not out["before"]:
        assert out["after"] == {"torch._dynamo": False, "torch._dynamo.utils": False, "sympy": False}
    # the 2x2 average of an 8x8 ramp over the box (0, 0)-(4, 4), by torchvision's compiled operator
    expected = torchvision.ops.roi_align(torch.arange(64.0).view(1, 1, 8, 8), [torch.tensor([[0.0, 0, 4, 4]])], 2)
    assert out["boxes"] == expected.flatten().tolist()
    assert out["real_registered"] and out["forwarded"] == [True, True] and out["forwarder_is_wsol"]


def test_the_stand_in_hands_any_other_name_to_the_real_module():
    out = _run(FALLBACK)
    assert out["probed"] == [False, False]
    assert out["same"] and out["replaced"]


def test_a_checkpoint_builds_on_the_meta_device_without_torchdynamo(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    assert _run(BUILD, str(path)) == {"dynamo": False, "torchvision": True, "equal": True}


def test_the_offline_model_imports_no_torchvision():
    assert _run(BUILD, "efficientnet_lite0") == {"dynamo": False, "torchvision": False, "equal": None}


def test_skip_meta_normal_skips_meta_tensors_only():
    with _SkipMetaNormal():
        meta = torch.empty(3, device="meta")
        assert meta.normal_(0, 1) is meta
        drawn = torch.zeros(10_000).normal_(0, 2, generator=torch.Generator().manual_seed(0))
    assert 1.9 < drawn.std().item() < 2.1
