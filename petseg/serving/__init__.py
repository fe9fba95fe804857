"""One TorchServe instance, operated: the serving state declared in config/serving.json
(``state``), starting TorchServe and applying that state to it (``launcher``, ``reconcile``),
changing the live instance and the file together (``changes``, ``models``), a recorded rollout
decision merged into what is applied (``decisions``, ``pod_decisions``), the container's main
process (``foreground``) and the one-machine demo (``demo``, ``supervisor``).

Everything else in petseg builds on this package; it imports none of them."""
