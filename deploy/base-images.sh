#!/usr/bin/env bash
# Makes the base images the Dockerfile builds from, on a machine where no image registry is
# reachable (Debian bookworm, podman 4.3, run as root). Idempotent: what exists is kept.
#
#   deploy/base-images.sh            # podman, runc, debootstrap; then the two images below
#   REBUILD=1 deploy/base-images.sh  # make both images again (REBUILD=debian: only the Debian one)
#
#   localhost/debian:bookworm-slim   debootstrap --variant=minbase bookworm, imported (~50 s)
#   <the Dockerfile's RUST_IMAGE>    that plus gcc, libc6-dev, make, pkg-config, ca-certificates
#                                    and a copy of this machine's stable Rust toolchain
#                                    (deploy/images/rust-toolchain.Containerfile)
#
# Both carry the names the Dockerfile's FROM lines ask for by default (podman finds a local image
# before it tries a registry), so the Dockerfile is built unchanged. Podman runs with the
# project's deploy/containers.conf (CONTAINERS_CONF, see deploy/podman-env.sh); nothing in /etc
# is written.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

log() { echo "base-images: $*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "base-images: run as root (podman 4.3 here works rootful; apt installs packages)" >&2
  exit 1
fi

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" > /dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} (apt)"
  apt-get update -q > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap > /dev/null
fi

# shellcheck source=deploy/podman-env.sh
. "$ROOT/deploy/podman-env.sh"

# The base image names the Dockerfile uses by default (its ARG lines).
dockerfile_arg() { sed -n "s/^ARG $1=//p" "$ROOT/Dockerfile" | head -n1; }
RUST_IMAGE=$(dockerfile_arg RUST_IMAGE)
RUNTIME_IMAGE=$(dockerfile_arg RUNTIME_IMAGE)
[ -n "$RUST_IMAGE" ] && [ -n "$RUNTIME_IMAGE" ] || { echo "base-images: no RUST_IMAGE/RUNTIME_IMAGE ARG in Dockerfile" >&2; exit 1; }
DEBIAN_IMAGE=localhost/debian:bookworm-slim
[ "$RUNTIME_IMAGE" = "debian:bookworm-slim" ] || log "note: the Dockerfile's runtime image is $RUNTIME_IMAGE, made here as $DEBIAN_IMAGE"

# REBUILD=1 makes both images again; REBUILD=debian only the Debian one (the Rust image keeps
# the one it was made from).
have_image() {
  case "${REBUILD:-}:$1" in
    1:* | "debian:$DEBIAN_IMAGE") return 1 ;;
  esac
  pm image exists "$1"
}

# ---- Debian bookworm, minbase ----------------------------------------------------------------
if have_image "$DEBIAN_IMAGE"; then
  log "$DEBIAN_IMAGE exists"
else
  # The machine's own Debian mirror (its apt sources), else debootstrap's default.
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  dir=$(mktemp -d /var/tmp/debootstrap.XXXXXX)
  trap 'rm -rf "$dir"' EXIT
  log "debootstrap --variant=minbase bookworm ${mirror:-(default mirror)}"
  start=$SECONDS
  debootstrap --variant=minbase bookworm "$dir" ${mirror:+"$mirror"} > "$dir.log" 2>&1 \
    || { tail -n 20 "$dir.log" >&2; exit 1; }
  rm -f "$dir.log"
  # Like the official debian:bookworm-slim: apt keeps no package caches after each run and dpkg
  # installs no documentation, man pages or translations (the same apt.conf.d and dpkg.cfg.d
  # settings), so an image's apt layer holds only what its packages install.
  cat > "$dir/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  echo 'Acquire::GzipIndexes "true";' > "$dir/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Acquire::Languages "none";' > "$dir/etc/apt/apt.conf.d/docker-no-languages"
  echo 'APT::AutoRemove::SuggestsImportant "false";' > "$dir/etc/apt/apt.conf.d/docker-autoremove-suggests"
  cat > "$dir/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
DPKG
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* "$dir"/usr/share/groff/* \
    "$dir"/usr/share/lintian/*
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
  tar -C "$dir" -c . | pm import --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" > /dev/null
  rm -rf "$dir"
  trap - EXIT
  log "$DEBIAN_IMAGE made in $((SECONDS - start)) s"
fi
if [ "$RUNTIME_IMAGE" != "$DEBIAN_IMAGE" ] && ! have_image "$RUNTIME_IMAGE"; then
  pm tag "$DEBIAN_IMAGE" "$RUNTIME_IMAGE"
fi

# ---- The Rust toolchain image -----------------------------------------------------------------
if have_image "$RUST_IMAGE"; then
  log "$RUST_IMAGE exists"
else
  sysroot=""
  if command -v rustup > /dev/null; then
    sysroot=$(rustup run stable rustc --print sysroot 2>/dev/null || true)
  fi
  [ -n "$sysroot" ] || sysroot=$(rustc --print sysroot 2>/dev/null || true)
  if [ -z "$sysroot" ] || [ ! -x "$sysroot/bin/cargo" ]; then
    echo "base-images: no stable Rust toolchain on this machine (rustup/rustc) to copy into $RUST_IMAGE" >&2
    exit 1
  fi
  sysroot=$(readlink -f "$sysroot")
  version=$("$sysroot/bin/rustc" --version | awk '{print $2}')
  wanted=$(echo "$RUST_IMAGE" | sed -n 's/^[^:]*:\([0-9][0-9.]*\)-.*/\1/p')
  case "$version" in
    "$wanted" | "$wanted".*) ;;
    *) log "warning: the machine's toolchain is $version, the Dockerfile asks for $RUST_IMAGE" ;;
  esac
  log "$RUST_IMAGE from $DEBIAN_IMAGE + rustc $version ($sysroot)"
  start=$SECONDS
  pm build --quiet -f deploy/images/rust-toolchain.Containerfile \
    --build-arg BASE_IMAGE="$DEBIAN_IMAGE" \
    --build-arg TOOLCHAIN_NAME="${version}-$(uname -m)-unknown-linux-gnu" \
    -v "$sysroot:/toolchain:ro" \
    -t "$RUST_IMAGE" deploy/images > /dev/null
  log "$RUST_IMAGE made in $((SECONDS - start)) s"
fi
