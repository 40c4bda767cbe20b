"""aMGS: automated Mouse Grimace Scale appliance.

The core package holds what every part shares: the wire contract (:mod:`amgs.contract`), model
manifests (:mod:`amgs.manifest`), the interpreter shim (:mod:`amgs.runtime`), the one preprocessing
path (:mod:`amgs.preprocess`), the score formula (:mod:`amgs.scoring`), label loaders
(:mod:`amgs.datasets`) and the synthetic face generator (:mod:`amgs.synth`). The rooms are
subpackages: ``amgs.device`` (device/), ``amgs.server`` (server/) and ``amgs.models`` (models/).
"""

__version__ = "0.1.0"
