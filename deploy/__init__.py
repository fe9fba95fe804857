"""Where petseg runs as containers: the two images' build files and the tool that builds and runs
them with podman (`python -m deploy.images`, behind `make image`). Nothing imports it but its
tests; it imports only the standard library."""
