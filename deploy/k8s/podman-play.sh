#!/usr/bin/env bash
# The cpu overlay's pod under podman, for want of a cluster (no API server runs here):
#   deploy/k8s/podman-play.sh [TAG]        after `make image IMAGE_TAG=TAG` (default: latest)
# Renders deploy/k8s/overlays/cpu with the local images and plays it: `podman kube play` runs
# the ConfigMaps and the server Deployment's pod much as a kubelet would (read-only root, uid
# 10001, no capabilities, the emptyDirs and the ConfigMaps mounted, the start command as
# written; petseg-decisions, which holds no data, mounts as an empty folder: no decision) and
# ignores the other kinds, the probes' timing and preStop. The decider's Deployment is left out
# of the render on purpose: it needs what podman does not give (an API server, a ServiceAccount
# token, the headless Service's DNS name). Waits for the readiness probe's
# command, sends one photo through the web container, shows what TorchServe runs, and takes the
# pod down. Render from the commit the images were built from (docs/containers-and-kubernetes.md).
set -euo pipefail

tag=${1:-latest}
root=$(cd "$(dirname "$0")/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/deploy/podman/containers.conf}
export CONTAINERS_STORAGE_CONF=${CONTAINERS_STORAGE_CONF:-$root/deploy/podman/storage.conf}
kubectl=kubectl
if [ -x "$root/.venv/bin/kubectl" ]; then kubectl=$root/.venv/bin/kubectl; fi
for image in petseg-model-server petseg-web; do
    podman image exists "localhost/$image:$tag" || { echo "no localhost/$image:$tag: make image" >&2; exit 2; }
done

work=$(mktemp -d /var/tmp/petseg-play.XXXXXX)
pod=play-petseg-pod-0
server=$pod-model-server
web=$pod-web
# kustomize takes only relative paths to other kustomizations.
cat >"$work/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namePrefix: play-
resources:
  - $(realpath --relative-to="$work" "$root/deploy/k8s/overlays/cpu")
images:
  - {name: petseg-model-server, newName: localhost/petseg-model-server, newTag: "$tag"}
  - {name: petseg-web, newName: localhost/petseg-web, newTag: "$tag"}
patches:
  - patch: |-
      \$patch: delete
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: petseg-decider}
EOF
"$kubectl" kustomize "$work" >"$work/pod.yaml"
cleanup() {
    podman kube down "$work/pod.yaml" >/dev/null 2>&1 || true
    # kube down leaves the volumes podman made for the ConfigMaps.
    for volume in $(grep -oE 'play-petseg-(config-[a-z0-9]+|decisions)' "$work/pod.yaml" | sort -u); do
        podman volume rm --force "$volume" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
# podman 4.3 logs an error per probe where no systemd runs its health-check timers: harmless.
podman kube play "$work/pod.yaml" >"$work/play.log" 2>&1 || { cat "$work/play.log" >&2; exit 1; }

start=$SECONDS
until podman exec "$server" petseg status >/dev/null 2>&1; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$server")" != true ] ||
        [ $((SECONDS - start)) -gt 300 ]; then
        podman logs --tail 40 "$server" >&2
        exit 1
    fi
    sleep 1
done
echo "ready after $((SECONDS - start)) s: $(podman exec "$server" petseg status)"
for container in "$server" "$web"; do
    echo "$container: $(podman inspect --format 'read-only root {{.HostConfig.ReadonlyRootfs}}, user {{.Config.User}}, {{.HostConfig.SecurityOpt}}' "$container"), $(podman exec "$container" cat /proc/1/status | grep CapEff)"
done
podman exec "$server" petseg models describe |
    grep -E '"(minWorkers|maxWorkers|batchSize|maxBatchDelay|deviceType)"' | tr -d ' ,\n'
echo

podman cp "$root/frontend_server/static/samples/cat.jpg" "$web:/tmp/cat.jpg"
podman exec -i "$web" /opt/venv/bin/python - <<'EOF'
import urllib.error
import urllib.request
import uuid

boundary = uuid.uuid4().hex
body = b"".join([
    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cat.jpg"\r\n'.encode(),
    b"Content-Type: image/jpeg\r\n\r\n", open("/tmp/cat.jpg", "rb").read(),
    f"\r\n--{boundary}--\r\n".encode(),
])
request = urllib.request.Request(
    "http://127.0.0.1:5000/api/segment?output=mask", data=body,
    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
)
try:
    with urllib.request.urlopen(request, timeout=60) as answer:
        print(f"POST /api/segment: {answer.status} {answer.headers['Content-Type']}, "
              f"{len(answer.read())} bytes")
except urllib.error.HTTPError as error:
    raise SystemExit(f"POST /api/segment: {error.code} {error.read().decode()}")
EOF
