# syntax=docker/dockerfile:1
# authsidecar: a static binary on distroless, as a non-root user, no shell.
#   docker build --build-arg VERSION=1.2.3 -t authsidecar:1.2.3 .

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# .ci/run runs this very line to check the binary is static.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/authsidecar .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authsidecar /authsidecar
# nonroot: 65532:65532
USER 65532:65532
# As a sidecar it listens on the pod's loopback; shared mode sets
# LISTEN_ADDR=0.0.0.0:8080 (and client keys).
ENV LISTEN_ADDR=127.0.0.1:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 CMD ["/authsidecar", "healthcheck"]
ENTRYPOINT ["/authsidecar"]
CMD ["serve"]
