"""The web container's process: petseg's Flask app under waitress, on port 5000 of every
interface of the container (the pod publishes it; settings come from the PETSEG_* variables).

`podman stop` sends SIGTERM through tini, and Python's default action for it ends the server.
"""

from __future__ import annotations

from frontend_server import create_app
from frontend_server.wsgi import make_server

PORT = 5000


def main() -> None:
    make_server(create_app(), "0.0.0.0", PORT).run()


if __name__ == "__main__":
    main()
