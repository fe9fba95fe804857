"""The operator's shell: the `petseg` command and what it drives. Runs where models are packaged,
served and managed; never inside TorchServe.

Its subpackages, one job each, and each only imports those above it in this list:

- ``serving``: one TorchServe instance: the declared serving state, starting, applying and
  changing it, the container's foreground process, the demo (`petseg serve|models|run`).
- ``packaging``: the .mar archive (`petseg archive`).
- ``rollout``: the rollout's one decider and how its decision reaches every instance, on one
  machine or on Kubernetes (`petseg rollout watch|status`).
- ``fleet``: several instances behind nginx on one machine, kept, healed and scaled
  (`petseg cluster`).
- ``bulk``: many photos through TorchServe or the web API, to masks, COCO and a report
  (`petseg predict` with folders).
- ``labelling``: petseg in Label Studio: the ML backend that pre-annotates its tasks, and tasks
  files with predictions (`petseg label-studio`, `petseg predict --label-studio`).

``petseg.cli`` is the command line over all of them.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The checkout: config/, handler/ and model_store/ are found from here."""
