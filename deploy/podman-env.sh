# Sourced by the rehearsal scripts: `. deploy/podman-env.sh`, then call `pm` instead of `podman`.
#
# CONTAINERS_CONF points podman at the project's deploy/containers.conf (runtime runc, no default
# ulimits) instead of /etc/containers/containers.conf. `pm` also passes --runtime runc explicitly:
# podman 4.3 honours [engine] runtime for containers, but `podman build` and `podman-compose`
# spawn podman processes of their own and the flag keeps every one of them on runc.
_podman_env_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CONTAINERS_CONF="$_podman_env_dir/containers.conf"
# The machine's CA bundle, mounted (never copied) into builds and containers that fetch over HTTPS.
export HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CA_MOUNT=(-v "$HOST_CA_BUNDLE:$HOST_CA_BUNDLE:ro")
pm() { podman --runtime runc "$@"; }
unset _podman_env_dir
