# syntax=docker/dockerfile:1
#
# sessiond image: a release build on Debian bookworm, run on distroless (glibc,
# no shell, no package manager) as the unprivileged user 65532 ("nonroot").
#
#   docker build -t sessiond .
#   docker run --rm -p 50051:50051 -p 9090:9090 -v sessiond-data:/data sessiond
#
# Every setting is a SESSIOND_* environment variable (see `sessiond --help`);
# the ones below make the container reachable and put the embedded store on /data.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# protoc comes vendored through build.rs, so the stock toolchain image suffices.
# The cache mounts keep the registry and target/ between builds; the binary is
# copied out in the same step, since a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sessiond \
 && install -D -m 0755 target/release/sessiond /out/sessiond \
 && install -d -m 0755 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sessiond /sessiond
# The embedded store's directory, writable by the runtime user; mount a volume
# here to keep the sessions across containers.
COPY --from=build --chown=65532:65532 /out/data /data
ENV SESSIOND_LISTEN=0.0.0.0:50051 \
    SESSIOND_METRICS_LISTEN=0.0.0.0:9090 \
    SESSIOND_DB_PATH=/data/sessiond.redb
# gRPC (with grpc.health.v1 and reflection), then Prometheus /metrics over HTTP.
EXPOSE 50051 9090
# "nonroot" given by number, so Kubernetes' runAsNonRoot can verify it without
# reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/sessiond"]
