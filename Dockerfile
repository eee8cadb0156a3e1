# Multi-stage build of the streamfold binary into a small runtime image.
#   docker build -t streamfold .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin streamfold

# Runtime: glibc and OpenSSL (librdkafka's TLS), no shell, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/streamfold /usr/local/bin/streamfold
COPY schemas /etc/streamfold/schemas
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/streamfold"]
CMD ["run", "--config", "/etc/streamfold/streamfold.toml", "--admin-addr", "0.0.0.0:9464"]
