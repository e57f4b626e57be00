# shellcheck shell=bash disable=SC2034 # the variables set here are used by the scripts
# Helpers shared by scripts/up, scripts/down, scripts/test and scripts/bench.
# Source it; do not run it. Safe under `set -euo pipefail`. The helpers check their own steps
# (`|| return`), so they also fail correctly where errexit is off (`helper || ...`, `if helper`).
#
# After sourcing:
#   RUDDER_ROOT        the repository root (absolute); the scripts cd there
#   CARGO_TARGET_DIR   exported; defaults to /var/tmp/rudder-target, outside the clone, so every
#                      clone and worktree on the machine shares one build
#   RUDDER_BIN         $CARGO_TARGET_DIR/release/rudder (one cargo profile: release)
#   RUDDER_*_APT       the Debian packages each activity needs (extend these lists, not the scripts)
#   RUDDER_TEST_PIP    the Python packages the tests need (installed with ensure_pip)

set -euo pipefail

RUDDER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

: "${CARGO_TARGET_DIR:=/var/tmp/rudder-target}"
export CARGO_TARGET_DIR
RUDDER_BIN="$CARGO_TARGET_DIR/release/rudder"

# Debian packages, by what needs them. ensure_apt installs only the missing ones.
# To build: protoc for the gRPC/protobuf code (etcd-client, k8s-cri); its recommended
# libprotobuf-dev brings the well-known .proto files. libc6-dev for the static sandbox (pause)
# program the agent crate compiles (crates/agent/build.rs).
RUDDER_BUILD_APT=(protobuf-compiler libc6-dev)
# To run `rudder server` on this machine with real containers (its default runtime when
# containerd is there and it runs as root): containerd, runc, the CNI plugins, iptables for the
# portmap plugin's hostPort rules and nft, which writes the service proxy's rules.
RUDDER_RUNTIME_APT=(containerd runc containernetworking-plugins iptables nftables)
# To run the test suite: a real etcd for the etcd backend's contract tests; curl for the raw
# requests kubectl never sends (YAML and broken bodies); for the CRI tests (crates/agent/tests/
# cri.rs, crates/rudder/tests/cri.rs): containerd and runc, the CNI plugins, iproute2 for the
# network namespace a test makes, busybox-static for the images the tests make, docker-registry
# for the registry they pull from, iptables for hostPorts and nftables for the service proxy.
RUDDER_TEST_APT=(etcd-server etcd-client curl containerd runc containernetworking-plugins iptables nftables iproute2 busybox-static docker-registry)
# To run the test suite: the official Kubernetes Python client, for crates/rudder/tests/python.rs,
# and pytest, which runs the client's own suites there
# (pip requirement specifiers; ensure_pip installs the missing ones).
RUDDER_TEST_PIP=(kubernetes==37.0.2 pytest==9.2.0)
# To run the benchmarks: etcd is the store benchmark's peer; containerd, runc and busybox the
# pod-start benchmark's; the net benchmark also needs the CNI plugins, nft and iproute2.
RUDDER_BENCH_APT=(etcd-server etcd-client containerd runc containernetworking-plugins nftables iproute2 busybox-static)

# ---------------------------------------------------------------------------------------------
# Messages

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# Microseconds since the epoch (bash 5's EPOCHREALTIME; no subprocess).
now_us() {
	local t=${EPOCHREALTIME/[.,]/}
	printf '%s' "$((10#$t))"
}

# Format a duration given in microseconds as seconds with one decimal: 12.3s
fmt_us() {
	local ds=$((($1 + 50000) / 100000))
	printf '%d.%ds' "$((ds / 10))" "$((ds % 10))"
}

# ---------------------------------------------------------------------------------------------
# Packages

# Run a command as root (directly, or through sudo).
as_root() {
	if ((EUID == 0)); then
		"$@"
	elif have sudo; then
		sudo "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

# Set once `apt-get update` has run in this script (and its children), so it runs at most once.
: "${_RUDDER_APT_UPDATED:=0}"

# ensure_apt PKG...: install the Debian packages that are not installed yet; do nothing (not even
# `apt-get update`) when all are present.
ensure_apt() {
	local pkg missing=()
	for pkg in "$@"; do
		[[ -n $pkg ]] || continue
		# shellcheck disable=SC2016 # ${Status} is dpkg-query's format, not a shell expansion
		if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) != "install ok installed" ]]; then
			missing+=("$pkg")
		fi
	done
	((${#missing[@]} > 0)) || return 0
	have apt-get || die "missing packages (${missing[*]}) and no apt-get: install them by hand"
	say "installing Debian packages: ${missing[*]}"
	if [[ $_RUDDER_APT_UPDATED != 1 ]]; then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return
		_RUDDER_APT_UPDATED=1
		export _RUDDER_APT_UPDATED
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# ensure_pip PKG...: install the Python packages (pip requirement specifiers such as
# `kubernetes==31.0.0` are fine) whose distribution is not installed yet, for python3.
ensure_pip() {
	local spec name missing=()
	if ! have python3; then ensure_apt python3 || return; fi
	if ! python3 -m pip --version >/dev/null 2>&1; then ensure_apt python3-pip || return; fi
	for spec in "$@"; do
		[[ -n $spec ]] || continue
		name=${spec%%[<>=!~;[ ]*}
		python3 -m pip show -q "$name" >/dev/null 2>&1 || missing+=("$spec")
	done
	((${#missing[@]} > 0)) || return 0
	say "installing Python packages: ${missing[*]}"
	# Debian's own python3 refuses pip installs (PEP 668) unless told otherwise; these are tools
	# for the tests on a disposable machine, so allow it. Other pythons ignore the variable.
	PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check "${missing[@]}"
}

# ---------------------------------------------------------------------------------------------
# Rust toolchain

# ensure_rust [COMPONENT...]: cargo must be on PATH (rustup's ~/.cargo/bin is added if needed);
# add rustup components (rustfmt, clippy) that are missing, when rustup manages the toolchain.
# shellcheck disable=SC2120 # the components are optional
ensure_rust() {
	if ! have cargo && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
		PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
		export PATH
	fi
	have cargo || die "cargo not found: install Rust (https://rustup.rs), then run this again"
	local comp
	for comp in "$@"; do
		case $comp in
		rustfmt) cargo fmt --version >/dev/null 2>&1 && continue ;;
		clippy) cargo clippy --version >/dev/null 2>&1 && continue ;;
		esac
		have rustup || die "cargo has no $comp and there is no rustup to add it"
		say "adding Rust component $comp"
		rustup component add "$comp" || return
	done
}

# ensure_cargo_install COMMAND CRATE: `cargo install CRATE --locked` unless COMMAND is on PATH.
ensure_cargo_install() {
	have "$1" && return 0
	say "installing $2 (cargo install $2 --locked)"
	cargo install "$2" --locked || return
	have "$1" || die "$1 still not on PATH after installing $2 (is ~/.cargo/bin on PATH?)"
}

# ---------------------------------------------------------------------------------------------
# Running a server

# The data directory of `scripts/up` / `scripts/down`: $RUDDER_DATA_DIR, else /var/lib/rudder for
# root (as k3s uses /var/lib/rancher/k3s), else ~/.rudder.
rudder_data_dir() {
	if [[ -n ${RUDDER_DATA_DIR:-} ]]; then
		printf '%s' "$RUDDER_DATA_DIR"
	elif ((EUID == 0)); then
		printf '%s' /var/lib/rudder
	else
		printf '%s' "$HOME/.rudder"
	fi
}

# pid_alive PID: the process exists and is not a zombie (a zombie answers `kill -0` but is dead,
# and without a reaping init it stays a zombie forever).
pid_alive() {
	local pid=$1 stat
	kill -0 "$pid" 2>/dev/null || return 1
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# rudder_pid PIDFILE: print the pid in PIDFILE if that process is alive and is a rudder binary
# (so a reused pid is never mistaken for the server); fail otherwise.
rudder_pid() {
	local pidfile=$1 pid exe
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	pid_alive "$pid" || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || exe=""
	[[ ${exe##*/} == rudder* ]] || return 1
	printf '%s' "$pid"
}
