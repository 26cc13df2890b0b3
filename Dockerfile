# syntax=docker/dockerfile:1
#
# Lanyard server image: a static Go binary on Debian slim, running as a non-root user.
#   docker build -t lanyard .
#   docker run -p 8080:8080 -v lanyard-data:/data lanyard
#
# Debian slim rather than distroless/static so the health check can run (bash's
# /dev/tcp, no curl needed); the binary itself needs nothing from the image but CA
# certificates (for Vault, Entra ID and other HTTPS peers), copied from the build stage.

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so source edits reuse the module download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO off: the SQLite driver is pure Go, so the binary is static.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/lanyard ./cmd/lanyard

FROM debian:bookworm-slim
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/lanyard /usr/local/bin/lanyard
# uid/gid 65532 (the distroless "nonroot" convention); /data holds the SQLite database,
# the local secrets backend and its master key unless configured elsewhere.
RUN groupadd --gid 65532 lanyard \
 && useradd --uid 65532 --gid 65532 --home-dir /data --no-create-home --shell /usr/sbin/nologin lanyard \
 && mkdir -p /data && chown 65532:65532 /data && chmod 0700 /data
USER 65532:65532
WORKDIR /data
ENV LANYARD_ADDR=:8080 \
    LANYARD_DATA_DIR=/data \
    LANYARD_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/lanyard"]
CMD ["serve"]
