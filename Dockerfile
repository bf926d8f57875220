# One image per service: `docker build --build-arg SERVICE=token-issuer .`
# Multi-stage with a cached dependency layer (cargo-chef), small runtime image.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG SERVICE
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p ${SERVICE}

FROM debian:bookworm-slim
ARG SERVICE
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/target/release/${SERVICE} /usr/local/bin/service
USER 65534
ENTRYPOINT ["/usr/local/bin/service"]
