# Static meshwait in an otherwise empty image, for `COPY --from`:
#
#   COPY --from=meshwait /meshwait /usr/local/bin/meshwait
#
# The build stage pins the toolchain by image tag (the Rust version meshwait is developed and tested
# with), builds from Cargo.lock with --locked, and strips build paths from the binary, so the same
# sources give the same binary.
FROM rust:1.95.0-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# RUSTFLAGS replaces the flags in .cargo/config.toml, so the non-PIE setting is repeated here.
ENV RUSTFLAGS="-C relocation-model=static --remap-path-prefix=/src=. --remap-path-prefix=/usr/local/cargo=cargo" \
    SOURCE_DATE_EPOCH=0
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/meshwait /meshwait

FROM scratch
COPY --from=build /meshwait /meshwait
ENTRYPOINT ["/meshwait"]
