#!/usr/bin/env bash
# Builds a release of the commit checked out: static meshwait binaries for x86_64 and aarch64,
# their SHA-256 sums and an SBOM per binary, in dist/meshwait-VERSION/ (or the directory given).
#
#   bash release.sh [OUT_DIR]
#
# Refuses a working tree with changes, so what it builds is exactly a commit. Needs rustup (it
# adds the two musl targets) and python3; both targets link with rust-lld from the toolchain, so no
# C cross toolchain is needed. The build is reproducible: build paths are stripped from the
# binaries and the SBOM's timestamp is the commit's.
set -euo pipefail
cd "$(dirname "$0")"

if [ -n "$(git status --porcelain --untracked-files=normal)" ]; then
  echo "release.sh: the working tree has changes; commit or stash them first:" >&2
  git status --short >&2
  exit 1
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
commit=$(git rev-parse HEAD)
out=${1:-dist/meshwait-$version}
mkdir -p "$out"
export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)

rustup --quiet target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
cargo_home=${CARGO_HOME:-$HOME/.cargo}
target_dir=${CARGO_TARGET_DIR:-target}
for arch in x86_64 aarch64; do
  target=$arch-unknown-linux-musl
  # The path remapping is added with --config, which cargo appends to .cargo/config.toml's flags
  # for the target; RUSTFLAGS would replace them (and lose the linker settings kept there).
  cargo build --quiet --release --locked --target "$target" \
    --config "target.$target.rustflags = ['--remap-path-prefix=$PWD=.', '--remap-path-prefix=$cargo_home=cargo']"
  cp "$target_dir/$target/release/meshwait" "$out/meshwait-$version-$arch-linux"
  python3 tools/sbom.py "$target" > "$out/meshwait-$version-$arch-linux.cdx.json"
done

(cd "$out" && sha256sum meshwait-"$version"-* > SHA256SUMS)
echo "meshwait $version ($commit) in $out:"
(cd "$out" && ls -l meshwait-"$version"-* SHA256SUMS | awk '{print "  " $5 "\t" $9}')
