"""Several instances behind nginx on one machine: `petseg cluster` (`make cluster`).

``cluster`` starts, rolls and stops the members; ``keeper`` supervises them (restarts what died
or hangs, runs the rollout's decider); ``autoscale`` decides how many there should be, from the
proxies' load read by ``proxy_gauges``. Builds on petseg.serving and petseg.rollout."""
