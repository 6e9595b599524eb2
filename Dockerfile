# syntax=docker/dockerfile:1
# Multi-stage build of the scattergather binary: a static binary on a
# distroless base, run as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/scattergather ./cmd/scattergather \
 && mkdir -p /out/var/lib/scattergather/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/scattergather /usr/local/bin/scattergather
COPY topology.yaml /etc/scattergather/topology.yaml
# The gather's Pebble state; a volume mounted here starts with this owner.
COPY --from=build --chown=65532:65532 /out/var/lib/scattergather /var/lib/scattergather
WORKDIR /var/lib/scattergather
USER nonroot:nonroot
# /metrics, /healthz and /readyz: run serves them on loopback unless told,
# and probes and Prometheus reach a container from outside.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/scattergather"]
CMD ["run", "--topology", "/etc/scattergather/topology.yaml", "--role", "all", "--state-dir", "/var/lib/scattergather/state", "--http-addr", "0.0.0.0:8080"]
