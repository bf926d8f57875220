# One image per service: `docker build --build-arg SERVICE=token-issuer .`
# Multi-stage: the dependencies are cooked in a layer of their own (cargo-chef; rebuilt only
# when Cargo.toml/Cargo.lock change), the six services are built together in one stage that
# every image shares (SERVICE is declared only in the last stage, so `docker compose build`
# compiles the workspace once, not six times), and the runtime image is debian-slim with the
# one binary.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked \
      -p token-issuer -p session-manager -p call-signaling \
      -p moderation -p webhook-ingest -p notifier

FROM debian:bookworm-slim
# curl: the compose healthcheck (GET /health); ca-certificates: HTTPS to LiveKit and push.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
ARG SERVICE
COPY --from=builder /src/target/release/${SERVICE} /usr/local/bin/service
USER 65534
ENTRYPOINT ["/usr/local/bin/service"]
