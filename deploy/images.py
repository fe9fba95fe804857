"""Build, run and stop petseg's two images with podman: `make image`, `make image-run` and
`make image-stop` call this, and so do the container tests.

    python -m deploy.images build [--tag latest] [--flavour cuda] [--export-dir exported/petseg]
    python -m deploy.images run [--tag latest] [--name petseg] [--port 5080]
    python -m deploy.images stop [--name petseg]

`run` starts one pod, as a Kubernetes pod would hold them: the model server and the web app share
its network namespace (the web app reaches TorchServe, management included, on 127.0.0.1) and a
tmpfs volume at /run/petseg where TorchServe writes its keys, which never touch a disk. Only the
web port is published, on 127.0.0.1: management and its key stay inside the pod.

podman uses deploy/podman/*.conf (runc, storage in /var/tmp/petseg-containers) unless
CONTAINERS_CONF / CONTAINERS_STORAGE_CONF name your own.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
STATE = Path("/var/tmp/petseg-containers")
"""Outside the repository and kept between runs, so a rebuild reuses the torch layers: podman's
storage (deploy/podman/storage.conf) and the wheelhouses."""
BASE_IMAGE = "debian:bookworm-slim"
FLAVOURS = ("cuda", "cpu")
MODEL_SERVER, WEB = "model-server", "web"
"""The images, by their folder in deploy/."""
WEB_PORT = 5000
"""Where the web container listens (deploy/web/serve.py); the pod publishes it."""
KEYS_DIR = "/run/petseg"
"""TorchServe's working folder in the model-server image, where it writes key_file.json."""
BUILD_TIMEOUT_S = 3600


def podman_env() -> dict[str, str]:
    """The environment podman runs in: this project's settings unless the caller has their own."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(DEPLOY / "podman" / "containers.conf"))
    env.setdefault("CONTAINERS_STORAGE_CONF", str(DEPLOY / "podman" / "storage.conf"))
    return env


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run podman, its output captured; a failure raises RuntimeError with podman's message."""
    result = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode:
        raise RuntimeError(f"podman {' '.join(args)}: {result.stderr.strip()}")
    return result


def image_name(folder: str, tag: str) -> str:
    return f"localhost/petseg-{folder}:{tag}"


def image_field(image: str, field: str) -> str:
    """One field of `podman image inspect` (``Size``, ``Id``, ``Config.User``...)."""
    return podman("image", "inspect", "--format", f"{{{{.{field}}}}}", image).stdout.strip()


def container_names(pod: str) -> list[str]:
    return [f"{pod}-{MODEL_SERVER}", f"{pod}-{WEB}"]


@dataclass(frozen=True)
class BuildOptions:
    tag: str = "latest"
    flavour: str = "cuda"
    base: str = BASE_IMAGE
    export_dir: Path = ROOT / "exported" / "petseg"


def build(options: BuildOptions) -> dict[str, str]:
    """Build both images (layers reused when nothing changed); their names by folder."""
    if not (options.export_dir / "model_spec.json").is_file():
        raise FileNotFoundError(f"no exported model in {options.export_dir}: `make train-demo`")
    ensure_base(options.base)
    wheels = ensure_wheelhouse(options.flavour)
    contexts = {"wheelhouse": wheels, "export": options.export_dir.resolve()}
    build_image(MODEL_SERVER, options, contexts, TORCH_FLAVOUR=options.flavour)
    build_image(WEB, options, {"wheelhouse": wheels})
    return {folder: image_name(folder, options.tag) for folder in (MODEL_SERVER, WEB)}


def warm(options: BuildOptions) -> None:
    """Build, quietly, what of both images does not depend on the model: the base, the
    wheelhouse, the model server up to its code (`--target app`: torch, TorchServe, petseg) and
    the web image. A `build` afterwards only archives the model into the last layers; the
    container tests start this at the beginning of a run, beside the other tests."""
    ensure_base(options.base)
    wheels = ensure_wheelhouse(options.flavour)
    with tempfile.TemporaryDirectory() as no_export:  # the model's stage is not built
        contexts = {"wheelhouse": wheels, "export": Path(no_export)}
        flavour = {"TORCH_FLAVOUR": options.flavour}
        build_image(MODEL_SERVER, options, contexts, target="app", quiet=True, **flavour)
    build_image(WEB, options, {"wheelhouse": wheels}, quiet=True)


def build_image(
    folder: str,
    options: BuildOptions,
    contexts: dict[str, Path],
    target: str | None = None,
    quiet: bool = False,
    **args: str,
) -> None:
    """podman build, in docker format: OCI images cannot carry a HEALTHCHECK. Only up to the
    stage ``target`` (untagged) when one is given; podman's output captured when ``quiet``."""
    containerfile = DEPLOY / folder / "Containerfile"
    command = ["podman", "build", "--format=docker", "--layers", f"--file={containerfile}"]
    command += [f"--ignorefile={containerfile}.dockerignore"]
    command += [f"--target={target}"] if target else [f"--tag={image_name(folder, options.tag)}"]
    for name, value in {"BASE_IMAGE": options.base, **args}.items():
        command.append(f"--build-arg={name}={value}")
    command += [f"--build-context={name}={path}" for name, path in contexts.items()]
    subprocess.run(
        [*command, str(ROOT)],
        env=podman_env(),
        check=True,
        timeout=BUILD_TIMEOUT_S,
        capture_output=quiet,
    )


def ensure_base(image: str) -> None:
    """The base image: present, pulled, or (Debian's, where no registry answers) debootstrapped."""
    if podman("image", "exists", image, check=False).returncode == 0:
        return
    if podman("pull", "--quiet", image, check=False, timeout=600).returncode == 0:
        return
    if image != BASE_IMAGE:
        raise RuntimeError(f"base image {image} is neither here nor pullable")
    print(f"no registry answers: building {image} with debootstrap", flush=True)
    subprocess.run(
        [str(DEPLOY / "debian-base.sh"), image], env=podman_env(), check=True, timeout=1200
    )


def requirement_files(flavour: str) -> list[Path]:
    """The requirements files the images install from (handler/requirements.txt comes in by
    -r from the model server's)."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour {flavour!r}: use one of {', '.join(FLAVOURS)}")
    server = DEPLOY / MODEL_SERVER
    return [
        server / "requirements.txt",
        server / f"torch-{flavour}.txt",
        ROOT / "frontend_server" / "requirements.txt",
    ]


def ensure_wheelhouse(flavour: str) -> Path:
    """Wheels for both images, made once with this Python's pip (the images' Python is 3.11
    too) and again only when a requirements file changes: the builds themselves stay offline."""
    if sys.version_info[:2] != (3, 11):
        raise RuntimeError("the wheelhouse must be made by Python 3.11, the images' Python")
    files = requirement_files(flavour)
    included = ROOT / "handler" / "requirements.txt"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in [*files, included])).hexdigest()
    folder = STATE / f"wheelhouse-{flavour}"
    stamp = folder / ".requirements.sha256"
    if stamp.is_file() and stamp.read_text() == digest:
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    requirements = [arg for path in files for arg in ("-r", str(path))]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(partial), *requirements],
        check=True,
        timeout=BUILD_TIMEOUT_S,
    )
    (partial / stamp.name).write_text(digest)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def run(pod: str = "petseg", tag: str = "latest", port: int = 5080, timeout: float = 300) -> str:
    """Start both images in a new pod; once the page can segment, its URL."""
    if podman("pod", "exists", pod, check=False).returncode == 0:
        raise RuntimeError(f"pod {pod} exists already: stop it first (`make image-stop`)")
    server, web = image_name(MODEL_SERVER, tag), image_name(WEB, tag)
    keys = create_keys_volume(pod, server)
    podman("pod", "create", "--name", pod, "--publish", f"127.0.0.1:{port}:{WEB_PORT}")
    # podman runs health checks from systemd timers; without systemd, only on demand
    # (`podman healthcheck run NAME`), which this flag allows without podman's errors.
    timers = [] if Path("/run/systemd/system").is_dir() else ["--health-interval=disable"]
    server_name, web_name = container_names(pod)
    start = ["run", "--detach", "--pod", pod, *timers, "--name"]
    podman(*start, server_name, "--volume", f"{keys}:{KEYS_DIR}", server)
    podman(*start, web_name, "--volume", f"{keys}:{KEYS_DIR}:ro", web)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_healthy(pod, url + "api/health", timeout)
    except (RuntimeError, TimeoutError):
        for name in container_names(pod):
            logs = podman("logs", "--tail", "40", name, check=False)
            print(f"--- {name}\n{logs.stdout}{logs.stderr}", flush=True)
        stop(pod)
        raise
    return url


def create_keys_volume(pod: str, server_image: str) -> str:
    """A tmpfs volume for TorchServe's key file, owned by the model server's user (the file is
    0600: the web container runs as the same user)."""
    uid, _, gid = image_field(server_image, "Config.User").partition(":")
    owner = f"o=uid={uid},gid={gid or uid},mode=0700"
    name = f"{pod}-keys"
    podman("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", owner, name)
    return name


def wait_healthy(pod: str, health_url: str, timeout: float) -> None:
    """Until the web app's health answers 200 (TorchServe has a ready worker); fail early if a
    container exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = podman("inspect", "--format", "{{.Name}} {{.State.Status}}", *container_names(pod))
        exited = [line for line in states.stdout.splitlines() if not line.endswith("running")]
        if exited:
            raise RuntimeError(f"container not running: {'; '.join(exited)}")
        try:
            with urllib.request.urlopen(health_url, timeout=5):
                return
        except urllib.error.HTTPError as exc:  # 503 until the model has a ready worker
            exc.close()
        except OSError:  # the port is published before anything listens behind it
            pass
        time.sleep(1)
    raise TimeoutError(f"{health_url} not healthy after {timeout:.0f} s")


def stop(pod: str = "petseg") -> None:
    """Stop and remove the pod, its containers and the keys volume; nothing there is fine."""
    podman("pod", "rm", "--force", "--time", "10", pod, check=False)
    podman("volume", "rm", "--force", f"{pod}-keys", check=False)


def print_endpoints(pod: str, url: str) -> None:
    """Where the page is, and how to reach the containers with the same podman settings."""
    env = podman_env()
    settings = " ".join(
        f"{name}={env[name]}" for name in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")
    )
    server, web = container_names(pod)
    print(
        f"\n  page:    {url}\n"
        f"  API:     POST {url}api/segment  (multipart 'file')\n"
        f"  health:  GET  {url}api/health\n"
        f"  podman:  {settings} podman\n"
        f"           logs -f {server}  (or {web})\n"
        f"           exec {server} petseg models list  (management: inside the pod only)\n"
        f"  stop:    make image-stop POD={pod}\n",
        flush=True,
    )


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.images",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="build both images")
    build_cmd.add_argument(
        "--flavour", choices=FLAVOURS, default=BuildOptions.flavour, help="torch's wheels"
    )
    build_cmd.add_argument("--base", default=BASE_IMAGE, help="base image (default: %(default)s)")
    build_cmd.add_argument("--export-dir", type=Path, default=BuildOptions.export_dir)
    run_cmd = commands.add_parser("run", help="start both in a pod, wait until ready")
    run_cmd.add_argument("--port", type=int, default=5080, help="the page's port on 127.0.0.1")
    run_cmd.add_argument("--timeout", type=float, default=300, help="seconds to wait for ready")
    for command in (build_cmd, run_cmd):
        command.add_argument("--tag", default=BuildOptions.tag)
    stop_cmd = commands.add_parser("stop", help="stop and remove the pod")
    for command in (run_cmd, stop_cmd):
        command.add_argument("--name", default="petseg", help="the pod (containers: NAME-...)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        if args.command == "build":
            names = build(BuildOptions(args.tag, args.flavour, args.base, args.export_dir))
            for name in names.values():
                print(f"built {name} ({int(image_field(name, 'Size')) / 1e6:.0f} MB)")
        elif args.command == "run":
            print_endpoints(args.name, run(args.name, args.tag, args.port, args.timeout))
        else:
            stop(args.name)
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        print(f"deploy.images: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
