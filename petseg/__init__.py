"""The operator's shell: the `petseg` command, the TorchServe launcher, the archive builder and
the demo launcher. Runs where models are packaged, served and managed; never inside TorchServe."""
