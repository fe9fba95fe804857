"""The rollout's one decider (`petseg rollout watch`) and `petseg rollout status`.

The decider sums every web proxy's figures of a trial and records one decision: into the serving
state on one machine, into the ConfigMap petseg-decisions on Kubernetes (``kube_decider``, through
the API server client ``kube_api``). How a recorded decision reaches an instance lives in
petseg.serving, which every instance runs; this package runs only where the decider does."""
