# Static meshwait in an otherwise empty image, for `COPY --from`:
#
#   COPY --from=meshwait /meshwait /usr/local/bin/meshwait
#
# One Dockerfile for both architectures. The build stage runs on the build machine's own platform
# and cross-compiles for the image's (TARGETARCH: amd64 or arm64), so an arm64 image builds without
# emulation:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t meshwait:0.1.0 .
#
# Both targets link with rust-lld, which ships with the Rust toolchain: no C toolchain and no apt
# step. The toolchain is pinned by image tag (the Rust version meshwait is developed and tested
# with), the dependencies by Cargo.lock (--locked), and build paths are stripped from the binary, so
# the same sources give the same binary.
FROM --platform=$BUILDPLATFORM rust:1.95.0-slim-bookworm AS build
ARG TARGETARCH
RUN rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
# The linker and its settings come from .cargo/config.toml. The path remapping is added with
# --config, which cargo appends to those flags; RUSTFLAGS would replace them.
ENV SOURCE_DATE_EPOCH=0
RUN case "$TARGETARCH" in \
      amd64) target=x86_64-unknown-linux-musl ;; \
      arm64) target=aarch64-unknown-linux-musl ;; \
      *) echo "meshwait is built for amd64 and arm64, not $TARGETARCH" >&2; exit 1 ;; \
    esac \
 && cargo build --release --locked --target "$target" \
      --config "target.$target.rustflags = ['--remap-path-prefix=/src=.', '--remap-path-prefix=/usr/local/cargo=cargo']" \
 && cp "target/$target/release/meshwait" /meshwait

FROM scratch
LABEL org.opencontainers.image.title="meshwait" \
      org.opencontainers.image.description="PID-1 wrapper for meshed pods: waits for the sidecar proxy, supervises the app as a correct init, drains it on SIGTERM" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /meshwait /meshwait
# No USER: meshwait runs as whatever user the pod's securityContext says, and is only copied out
# of this image (`COPY --from`, `meshwait install`).
ENTRYPOINT ["/meshwait"]
