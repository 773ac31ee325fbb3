# A Go service with meshwait as its entrypoint, in a distroless image.
#
# Build from the service's source tree (go.mod, go.sum, ./cmd/orders):
#   docker build -f Dockerfile.go -t registry.example.com/orders:1.4.2 .
#
# The meshwait image is a build argument. `COPY --from` does not take one itself, hence the named
# stage; with a fixed image the two lines can be one:
#   COPY --from=registry.example.com/meshwait:0.1.0 /meshwait /usr/local/bin/meshwait
ARG MESHWAIT_IMAGE=registry.example.com/meshwait:0.1.0
FROM ${MESHWAIT_IMAGE} AS meshwait

FROM golang:1.25 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off: a static binary, which is what the static distroless base expects (no libc in it).
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/orders ./cmd/orders

# static-debian12 has no shell and no libc; meshwait is static too, so it runs here as it is.
# :nonroot runs as UID 65532; meshwait needs no privileges to read the pod's sockets.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=meshwait /meshwait /usr/local/bin/meshwait
COPY --from=build /out/orders /app/orders
EXPOSE 8080
# meshwait is PID 1; the app is its supervised child and gets SIGTERM after the drain.
# ENTRYPOINT and CMD are split so that a manifest's `args:` swaps the command (a Job running
# `/app/orders reindex`) and keeps meshwait; a manifest's `command:` would replace meshwait.
ENTRYPOINT ["/usr/local/bin/meshwait", "--"]
CMD ["/app/orders"]
