# Sourced by the scripts that install a Debian package the tests need (chromium.sh,
# prometheus.sh): apt_install SCRIPT PACKAGE installs PACKAGE with apt-get, as root or through
# sudo, quietly, running `apt-get update` only when the first attempt fails. Exits 1 with a
# message naming SCRIPT when it cannot.
apt_install() {
  local script="$1" package="$2"
  local -a sudo
  command -v apt-get >/dev/null 2>&1 || { echo "$script: $package not found and no apt-get: install it so the tests find it" >&2; exit 1; }
  if [[ "$(id -u)" == 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    echo "$script: installing the $package package needs root (or sudo)" >&2
    exit 1
  fi
  echo "$script: installing Debian's $package package, once" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$package" >/dev/null 2>&1 \
    || { "${sudo[@]}" apt-get update -qq >&2 && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$package" >&2; }
}
