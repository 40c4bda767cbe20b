"""aMGS: automated Mouse Grimace Scale appliance.

The core package holds what every part shares: the wire contract (:mod:`amgs.contract`), model
manifests (:mod:`amgs.manifest`), the interpreter shim (:mod:`amgs.runtime`), the one preprocessing
path (:mod:`amgs.preprocess`), the score formula (:mod:`amgs.scoring`), label loaders
(:mod:`amgs.datasets`) and the synthetic face generator (:mod:`amgs.synth`). The parts are
subpackages: ``amgs.device`` (device/), ``amgs.server`` (server/), ``amgs.models`` (models/),
``amgs.demo`` and ``amgs.deploy``; docs/architecture.md says what may import what.
"""

__version__ = "0.1.0"
