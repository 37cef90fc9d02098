"""Write wsol/conf/model/<name>.yaml for every torchvision classifier (run after a torchvision upgrade); the
hand-written files of the offline and wsolevaluation models and of model=timm / model=custom stay.

tests/test_config.py checks that wsol/conf/model/ and torchvision's list agree.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsol.models import OFFLINE_MODELS, SOURCES, WSOLEVAL_MODELS, list_model_names  # noqa: E402

TEMPLATE = """# torchvision {name}: python -m wsol.run model={name} [model.layer=...]; keys and defaults: ModelConfig in
# wsol/config.py (weights: DEFAULT, checkpoint, num_classes, layer, fusion)
name: {name}
"""


def main() -> None:
    conf = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "wsol", "conf", "model")
    os.makedirs(conf, exist_ok=True)
    own = {f"{name}.yaml" for name in (*OFFLINE_MODELS, *WSOLEVAL_MODELS, *SOURCES)}
    for name in os.listdir(conf):
        if name.endswith(".yaml") and name not in own:
            os.remove(os.path.join(conf, name))
    for name in list_model_names():
        if f"{name}.yaml" in own:
            continue
        with open(os.path.join(conf, f"{name}.yaml"), "w") as f:
            f.write(TEMPLATE.format(name=name))


if __name__ == "__main__":
    main()
