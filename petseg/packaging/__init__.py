"""The .mar archive that TorchServe loads: `petseg archive` (`make archive`).

Its own package because it runs where a model is packaged, which need not be where one is
served; it reads the serving state only to name the version it packs."""
