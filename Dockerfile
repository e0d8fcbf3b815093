# secretsync's image: one statically linked binary on an empty base image (no
# shell, no libc, no package manager), run as a non-root user.
#
#   podman build -t secretsync .        (or: docker build -t secretsync .)
#
# The binary is linked statically against glibc (target-feature=+crt-static on
# x86_64-unknown-linux-gnu): no musl toolchain needed. secretsync resolves
# names through glibc's built-in DNS and files lookups, which work without NSS
# modules. tests/image.rs builds the final stage from a binary it builds the
# same way (--build-context build=DIR stands in for the first stage).

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --bin secretsync --target x86_64-unknown-linux-gnu \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/secretsync /out/secretsync

FROM scratch
# CA certificates: AWS endpoints and the Kubernetes client need them for TLS.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/secretsync /secretsync
# The distroless "nonroot" user; the chart and deploy/ run as it too.
USER 65532:65532
ENTRYPOINT ["/secretsync"]
CMD ["controller"]
